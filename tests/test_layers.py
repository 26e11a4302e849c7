"""gpt2_jax.layers: LayerNorm's hand-written CPU backward equals autodiff of the plain formula and
runs only on the CPU backend; Dense contracts the declared dims."""
import jax
import jax.numpy as jnp
import numpy as np

from gpt2_jax import layers


def _plain(x, scale, bias, eps=1e-5):
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(jnp.square(x - mean).mean(-1, keepdims=True) + eps) * scale + bias


def test_layer_norm_custom_vjp_matches_autodiff():
    """The CPU backward (parameter grads as ones·matrix products) gives autodiff's values and
    gradients and keeps the input dtype."""
    k = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(k[0], (2, 7, 32)) * 3 + 1
    scale, bias = jax.random.normal(k[1], (32,)), jax.random.normal(k[2], (32,))
    w = jax.random.normal(k[3], (2, 7, 32))
    grad = lambda fn: jax.jit(jax.grad(lambda *a: (fn(*a) * w).sum(), argnums=(0, 1, 2)))  # noqa: E731
    ours = grad(lambda x, s, b: layers.layer_norm(x, s, b, 1e-5))(x, scale, bias)
    ref = grad(_plain)(x, scale, bias)
    np.testing.assert_allclose(np.asarray(layers.layer_norm(x, scale, bias, 1e-5)),
                               np.asarray(_plain(x, scale, bias)), atol=1e-5)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-5)
    dx16 = jax.grad(lambda x: layers.layer_norm(x, scale, bias, 1e-5).sum())(x.astype(jnp.bfloat16))
    assert dx16.dtype == jnp.bfloat16


def test_custom_vjp_only_on_cpu(monkeypatch):
    """The CPU trick is chosen by backend: other backends trace the plain formula."""
    x, s, b = jnp.ones((2, 8)), jnp.ones((8,)), jnp.zeros((8,))
    jaxpr = lambda: str(jax.make_jaxpr(lambda x: layers.layer_norm(x, s, b, 1e-5))(x))  # noqa: E731
    assert "custom_vjp" in jaxpr()
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert "custom_vjp" not in jaxpr()


def test_dense_contracts_in_shape_and_keeps_params_fp32():
    d = layers.Dense((4,), (3, 2), ("embed", "heads", "kv"), 0.02, jnp.bfloat16)
    x = jnp.ones((5, 4))
    params = d.init(jax.random.key(0), x)["params"]
    kernel = params["kernel"].unbox() if hasattr(params["kernel"], "unbox") else params["kernel"]
    assert kernel.shape == (4, 3, 2) and kernel.dtype == jnp.float32
    y = d.apply({"params": params}, x)
    assert y.shape == (5, 3, 2) and y.dtype == jnp.bfloat16
