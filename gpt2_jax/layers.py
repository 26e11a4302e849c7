"""The two layers GPT-2 is built from besides attention: LayerNorm and Dense. Parameters are fp32
and carry logical axis names; compute runs in the config's dtype (LayerNorm statistics in fp32).
Backend-specific tricks are chosen by backend and never run elsewhere."""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _layer_norm(x, scale, bias, eps):
    x32 = x.astype(jnp.float32)
    centred = x32 - x32.mean(-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(centred).mean(-1, keepdims=True) + eps)
    xhat = centred * rstd
    return xhat * scale + bias, (xhat, rstd, scale, jnp.zeros((0,), x.dtype))


def _layer_norm_bwd(eps, res, dy):
    xhat, rstd, scale, x_dtype = res
    dy = dy.astype(jnp.float32)
    g = dy * scale
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    # Parameter grads as ones·[rows, D] products, not column reductions: XLA:CPU (YNNPACK) runs a
    # fused multiply + column reduce ~20x slower than this dot (~6% of a 124M train step).
    rows = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    ones = jnp.ones((1, rows(dy).shape[0]), jnp.float32)
    return dx.astype(x_dtype.dtype), (ones @ rows(dy * xhat))[0], (ones @ rows(dy))[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm_cpu(x, scale, bias, eps: float):
    return _layer_norm(x, scale, bias, eps)[0]


_layer_norm_cpu.defvjp(_layer_norm, _layer_norm_bwd)


def layer_norm(x, scale, bias, eps: float):
    """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, in fp32. On CPU the backward
    pass is hand-written (see _layer_norm_bwd); elsewhere XLA differentiates the plain formula."""
    if jax.default_backend() == "cpu":
        return _layer_norm_cpu(x, scale, bias, eps)
    return _layer_norm(x, scale, bias, eps)[0]


class LayerNorm(nn.Module):
    """LayerNorm in fp32 (GPT-2 eps 1e-5), params `scale` and `bias` over the embed axis."""
    eps: float

    @nn.compact
    def __call__(self, x_BTD):
        d = x_BTD.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (d,))
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)), (d,))
        return layer_norm(x_BTD, scale, bias, self.eps)


class Dense(nn.Module):
    """y = x·W + b with W of shape in_shape + out_shape, computed in `dtype`, params in fp32."""
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    axes: tuple[str | None, ...]
    std: float
    dtype: Any

    @nn.compact
    def __call__(self, x):
        n_in = len(self.in_shape)
        kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(stddev=self.std),
                                                                   self.axes), self.in_shape + self.out_shape)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, self.axes[n_in:]),
                          self.out_shape)
        contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
        y = jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype), (contract, ((), ())))
        return y + bias.astype(self.dtype)
