"""GPT-2 as pure functional Flax: `init_params` returns a plain pytree, `forward` is a pure function.

Parameter names follow OpenAI/HF (wte, wpe, h, ln_1, attn/c_attn, attn/c_proj, ln_2, mlp/c_fc,
mlp/c_proj, ln_f). The blocks' parameters are always stacked on a leading `layers` axis under `h`,
whether the forward pass scans over them or unrolls the loop, so one checkpoint layout serves both.
c_attn is stored as [embed, 3, heads, kv] so tensor parallelism splits heads, never q/k/v.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gpt2_jax import attention
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError

Params = dict[str, Any]
_ACT = ("activation_batch", "activation_length", "activation_embed")


def _normal(std):
    return nn.initializers.normal(stddev=std)


def _layer_norm_fwd(x, scale, bias, eps):
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
    rows = lambda a: a.reshape(-1, a.shape[-1])
    ones = jnp.ones((1, rows(dy).shape[0]), jnp.float32)
    return dx.astype(x_dtype.dtype), (ones @ rows(dy * xhat))[0], (ones @ rows(dy))[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x, scale, bias, eps: float):
    """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, in fp32."""
    return _layer_norm_fwd(x, scale, bias, eps)[0]


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


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
        kernel = self.param("kernel", nn.with_logical_partitioning(_normal(self.std), self.axes),
                            self.in_shape + self.out_shape)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros,
                                                               self.axes[n_in:]), self.out_shape)
        contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
        y = jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype), (contract, ((), ())))
        return y + bias.astype(self.dtype)


class Attention(nn.Module):
    cfg: GPT2Config
    deterministic: bool

    @nn.compact
    def __call__(self, x_BTD, kv_cache, mask_BTS, cache_index):
        c, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        h, k = c.n_head, c.head_dim
        qkv_BT3HK = Dense((c.n_embd,), (3, h, k), ("embed", "qkv", "heads", "kv"),
                          c.initializer_range, dt, name="c_attn")(x_BTD)
        q_BTHK, k_BTHK, v_BTHK = (qkv_BT3HK[:, :, i] for i in range(3))
        new_cache = None
        if kv_cache is not None:  # write this step's keys/values at cache_index, attend to all slots
            # The cache is head-major [B, H, S, K]: the attention dots read it without a copy.
            write = lambda c_BHSK, x_BTHK: jax.lax.dynamic_update_slice_in_dim(
                c_BHSK, x_BTHK.transpose(0, 2, 1, 3).astype(c_BHSK.dtype), cache_index, axis=2)
            new_cache = {"k": write(kv_cache["k"], k_BTHK), "v": write(kv_cache["v"], v_BTHK)}
            o_BTHK = attention.reference_attention(q_BTHK, new_cache["k"].astype(dt), new_cache["v"].astype(dt),
                                                   mask_BTS, kv_layout="bhsk")
        elif mask_BTS is not None or (c.dropout > 0 and not self.deterministic):
            rng = None if self.deterministic else self.make_rng("dropout")
            o_BTHK = attention.reference_attention(q_BTHK, k_BTHK, v_BTHK, mask_BTS,
                                                   dropout_rate=c.dropout, dropout_rng=rng)
        else:
            o_BTHK = attention.causal_attention(q_BTHK, k_BTHK, v_BTHK, impl=c.attention,
                                                block_size=c.attn_block_size)
        o_BTHK = nn.with_logical_constraint(o_BTHK, ("activation_batch", "activation_length",
                                                     "activation_heads", "activation_kv"))
        y_BTD = Dense((h, k), (c.n_embd,), ("heads", "kv", "embed"),
                      c.initializer_range / math.sqrt(2 * c.n_layer), dt, name="c_proj")(o_BTHK)
        return y_BTD, new_cache


class MLP(nn.Module):
    cfg: GPT2Config

    @nn.compact
    def __call__(self, x_BTD):
        c, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        h_BTF = Dense((c.n_embd,), (c.mlp_dim,), ("embed", "mlp"), c.initializer_range, dt,
                      name="c_fc")(x_BTD)
        h_BTF = nn.with_logical_constraint(jax.nn.gelu(h_BTF, approximate=True),
                                           ("activation_batch", "activation_length", "activation_mlp"))
        return Dense((c.mlp_dim,), (c.n_embd,), ("mlp", "embed"),
                     c.initializer_range / math.sqrt(2 * c.n_layer), dt, name="c_proj")(h_BTF)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)); x + mlp(ln_2(x)). Scan-compatible signature."""
    cfg: GPT2Config
    deterministic: bool

    @nn.compact
    def __call__(self, x_BTD, kv_cache, mask_BTS, cache_index):
        c = self.cfg
        drop = lambda y: nn.Dropout(c.dropout, deterministic=self.deterministic)(y)
        a_BTD, new_cache = Attention(c, self.deterministic, name="attn")(
            LayerNorm(c.layer_norm_epsilon, name="ln_1")(x_BTD), kv_cache, mask_BTS, cache_index)
        x_BTD = x_BTD + drop(a_BTD).astype(x_BTD.dtype)
        m_BTD = MLP(c, name="mlp")(LayerNorm(c.layer_norm_epsilon, name="ln_2")(x_BTD))
        x_BTD = x_BTD + drop(m_BTD).astype(x_BTD.dtype)
        return nn.with_logical_constraint(x_BTD, _ACT), new_cache


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class GPT2(nn.Module):
    cfg: GPT2Config
    deterministic: bool = True
    split_layers: bool = False  # blocks as h_0..h_{L-1} (see split_layer_params), not one scan

    @nn.compact
    def __call__(self, tokens_BT, positions_BT, kv_cache=None, mask_BTS=None, cache_index=0,
                 return_hidden=False):
        """(logits_BTV, new_cache); with `return_hidden`, the final hidden states (after ln_f)
        instead of logits, so callers that need few positions skip the [B, T, V] head."""
        c = self.cfg
        wte = self.param("wte", nn.with_logical_partitioning(_normal(c.initializer_range), ("vocab", "embed")),
                         (c.vocab_size, c.n_embd))
        wpe = self.param("wpe", nn.with_logical_partitioning(_normal(c.initializer_range), ("positions", "embed")),
                         (c.n_positions, c.n_embd))
        x_BTD = (jnp.take(wte, tokens_BT, axis=0) + jnp.take(wpe, positions_BT, axis=0))
        x_BTD = nn.Dropout(c.dropout, deterministic=self.deterministic)(x_BTD)
        x_BTD = nn.with_logical_constraint(x_BTD, _ACT)

        if self.split_layers:
            x_BTD, new_cache = self._split_blocks(x_BTD, kv_cache, mask_BTS, cache_index)
            return self._head(x_BTD, wte, return_hidden), new_cache

        block = Block
        if c.remat != "none":
            block = nn.remat(Block, policy=_REMAT_POLICIES[c.remat], prevent_cse=not c.scan_layers,
                             static_argnums=())
        stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                        in_axes=(0, nn.broadcast, nn.broadcast), length=c.n_layer,
                        unroll=1 if c.scan_layers else c.n_layer,
                        metadata_params={nn.PARTITION_NAME: "layers"})
        x_BTD, new_cache = stack(c, self.deterministic, name="h")(x_BTD, kv_cache, mask_BTS, cache_index)
        return self._head(x_BTD, wte, return_hidden), new_cache

    def _split_blocks(self, x_BTD, kv_cache, mask_BTS, cache_index):
        """The blocks one by one from per-layer params: no per-step slicing of stacked weights."""
        c = self.cfg
        per_layer = kv_cache is not None and isinstance(kv_cache["k"], (tuple, list))
        for i in range(c.n_layer):
            layer_cache = None if kv_cache is None else {"k": kv_cache["k"][i], "v": kv_cache["v"][i]}
            x_BTD, new = Block(c, self.deterministic, name=f"h_{i}")(x_BTD, layer_cache, mask_BTS, cache_index)
            if per_layer:  # each layer's buffer is updated in place
                kv_cache = {n: tuple(new[n] if j == i else a for j, a in enumerate(kv_cache[n])) for n in ("k", "v")}
            elif kv_cache is not None:
                kv_cache = {"k": kv_cache["k"].at[i].set(new["k"]), "v": kv_cache["v"].at[i].set(new["v"])}
        return x_BTD, kv_cache

    def _head(self, x_BTD, wte, return_hidden):
        c = self.cfg
        x_BTD = LayerNorm(c.layer_norm_epsilon, name="ln_f")(x_BTD)
        if return_hidden:
            return x_BTD
        return nn.with_logical_constraint(lm_head({"wte": wte}, x_BTD, c),
                                          ("activation_batch", "activation_length", "activation_vocab"))


def lm_head(params: Params, h_BTD: jax.Array, cfg: GPT2Config) -> jax.Array:
    """The tied output layer: logits float32 [..., vocab] from final hidden states [..., D]."""
    return jnp.einsum("...d,vd->...v", h_BTD.astype(cfg.dtype), params["wte"].astype(cfg.dtype),
                      preferred_element_type=jnp.float32)


def _abstract_boxed(cfg: GPT2Config):
    tokens = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: GPT2(cfg).init(jax.random.key(0), tokens, tokens))["params"]


def init_params(cfg: GPT2Config, key: jax.Array) -> Params:
    """Fresh GPT-2 parameters (fp32): N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
    zero biases, unit LayerNorm scales. Returns a plain nested dict of arrays."""
    tokens = jnp.zeros((1, 1), jnp.int32)
    boxed = jax.jit(lambda k: GPT2(cfg).init(k, tokens, tokens)["params"])(key)
    return nn.meta.unbox(boxed)


def param_shapes(cfg: GPT2Config) -> Params:
    """The parameter pytree as `jax.ShapeDtypeStruct`s, without allocating anything."""
    return nn.meta.unbox(_abstract_boxed(cfg))


def param_logical_axes(cfg: GPT2Config) -> Params:
    """A pytree like the params whose leaves are `PartitionSpec`s of logical axis names."""
    return nn.get_partition_spec(_abstract_boxed(cfg))


def count_params(params: Params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))


def forward(params: Params, tokens_BT: jax.Array, cfg: GPT2Config, *,
            positions_BT: jax.Array | None = None, key_mask_BT: jax.Array | None = None,
            rng: jax.Array | None = None, return_hidden: bool = False) -> jax.Array:
    """Logits float32 [B, T, vocab] for int tokens [B, T]. Pure and jit-able (cfg is static).

    `key_mask_BT` marks real tokens (False = padding, never attended to); `rng` turns dropout on;
    `return_hidden` gives the final hidden states [B, T, D] instead (apply `lm_head` to a subset).
    """
    b, t = tokens_BT.shape
    if positions_BT is None:
        if t > cfg.n_positions:
            raise InputError(f"{t} tokens exceed the model's context of n_positions={cfg.n_positions}; "
                             f"pass at most {cfg.n_positions} tokens (slide a window over longer text).")
        positions_BT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    mask_BTS = None
    if key_mask_BT is not None:
        mask_BTS = key_mask_BT[:, None, :] & jnp.tril(jnp.ones((t, t), bool))[None]
    rngs = {"dropout": rng} if rng is not None else None
    out, _ = GPT2(cfg, deterministic=rng is None, split_layers="h" not in params).apply(
        {"params": params}, tokens_BT, positions_BT, None, mask_BTS, 0, return_hidden, rngs=rngs)
    return out


def split_layer_params(params: Params) -> Params:
    """The same parameters with the stacked `h` split into per-layer `h_0`..`h_{L-1}` (copies).
    Decoding from these is faster on CPU: inside a decode loop XLA copies each layer's slice of
    the stacked weights every step, while split arrays are read in place. `forward_cached`
    accepts either form; do the split once, outside the loop (it is not a checkpoint layout)."""
    h = params["h"]
    n_layer = jax.tree.leaves(h)[0].shape[0]
    out = {k: v for k, v in params.items() if k != "h"}
    for i in range(n_layer):
        out[f"h_{i}"] = jax.tree.map(lambda x: x[i], h)
    return out


@jax.jit(static_argnames=("dtype",))
def _decode_copy(params: Params, dtype: str | None) -> Params:
    out = split_layer_params(params) if "h" in params else dict(params)
    if dtype is not None:  # LayerNorm params stay fp32: they are tiny and feed fp32 statistics
        out = jax.tree_util.tree_map_with_path(
            lambda path, x: x if "ln_" in jax.tree_util.keystr(path) else x.astype(dtype), out)
    return out


def decode_params(params: Params, *, dtype: Any = None) -> Params:
    """The form KV-cache decoding reads fastest, made as one jitted copy: per-layer blocks
    (split_layer_params). `dtype` (e.g. bfloat16) also stores the weights in that dtype (half the
    memory; compute stays in cfg.dtype). Params already split and not cast are returned as is."""
    dtype = None if dtype is None else jnp.dtype(dtype).name
    if "h" not in params and dtype is None:
        return params
    return _decode_copy(params, dtype)


def init_cache(cfg: GPT2Config, batch_size: int, max_len: int, dtype: Any = None,
               per_layer: bool = False) -> dict[str, Any]:
    """An empty KV cache of `max_len` slots: k/v [layers, B, heads, S, head_dim], valid-slot mask, index.
    With `per_layer`, k/v are tuples of one [B, heads, S, head_dim] array per layer: with per-layer
    params (split_layer_params) each step then writes its new slots into each buffer in place,
    where a stacked cache is copied layer by layer on CPU."""
    dtype = jnp.dtype(dtype or cfg.dtype)
    shape = (batch_size, cfg.n_head, max_len, cfg.head_dim)
    if per_layer:
        k = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layer))
        v = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layer))
    else:
        k, v = jnp.zeros((cfg.n_layer,) + shape, dtype), jnp.zeros((cfg.n_layer,) + shape, dtype)
    return {"k": k, "v": v, "mask": jnp.zeros((batch_size, max_len), bool), "index": jnp.zeros((), jnp.int32)}


def forward_cached(params: Params, tokens_BT: jax.Array, positions_BT: jax.Array,
                   cache: dict[str, jax.Array], cfg: GPT2Config,
                   token_mask_BT: jax.Array | None = None,
                   return_hidden: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Run T new tokens against a KV cache; returns their logits (or, with `return_hidden`, final
    hidden states) and the cache advanced by T slots.

    Slot order is time order (prompts are left-padded), so slot s is visible to the token in slot
    t iff s <= t and slot s holds a real token (`token_mask_BT` False marks padding)."""
    b, t = tokens_BT.shape
    s = cache["mask"].shape[1]
    index = cache["index"]
    if token_mask_BT is None:
        token_mask_BT = jnp.ones((b, t), bool)
    mask_BS = jax.lax.dynamic_update_slice_in_dim(cache["mask"], token_mask_BT, index, axis=1)
    causal_TS = (index + jnp.arange(t))[:, None] >= jnp.arange(s)[None, :]
    mask_BTS = mask_BS[:, None, :] & causal_TS[None]
    kv = {"k": cache["k"], "v": cache["v"]}
    split = "h" not in params  # per-layer params from split_layer_params
    if not split and isinstance(kv["k"], (tuple, list)):  # the layer scan needs one stacked cache
        out, new_kv = GPT2(cfg).apply({"params": params}, tokens_BT, positions_BT,
                                      {n: jnp.stack(kv[n]) for n in kv}, mask_BTS, index, return_hidden)
        new_kv = {n: tuple(new_kv[n]) for n in new_kv}
        return out, {**new_kv, "mask": mask_BS, "index": index + t}
    out, new_kv = GPT2(cfg, split_layers=split).apply({"params": params}, tokens_BT, positions_BT, kv,
                                                      mask_BTS, index, return_hidden)
    return out, {"k": new_kv["k"], "v": new_kv["v"], "mask": mask_BS, "index": index + t}
