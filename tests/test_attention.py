"""Every attention kernel, and the scanned/unrolled/remat model variants, agree on logits and grads."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpt2_jax import attention, model
from gpt2_jax.errors import ConfigError

CPU_IMPLS = ["reference", "blocked", "online", "xla"]  # the GPT2Config.attention choices that run on CPU


def _qkv(b=2, t=100, h=4, d=16, seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return [jax.random.normal(k, (b, t, h, d), jnp.float32) for k in ks]


def _dense_numpy(q, k, v):
    """Textbook causal softmax attention in float64 numpy: the independent reference."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    t = q.shape[1]
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", p, v)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("t,block", [(100, 16), (64, 64), (7, 128), (130, 32)])
def test_kernels_match_numpy(impl, t, block):
    q, k, v = _qkv(t=t)
    out = attention.causal_attention(q, k, v, impl=impl, block_size=block)
    np.testing.assert_allclose(np.asarray(out), _dense_numpy(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl,t", [("blocked", 48), ("blocked", 45), ("online", 48), ("xla", 48)])
def test_kernel_gradients_match_reference(impl, t):
    q, k, v = _qkv(t=t)
    w = jax.random.normal(jax.random.key(9), q.shape)
    f = lambda fn: jax.grad(lambda q, k, v: (fn(q, k, v) * w).sum(), argnums=(0, 1, 2))(q, k, v)
    ref = f(lambda q, k, v: attention.causal_attention(q, k, v, impl="reference"))
    got = f(lambda q, k, v: attention.causal_attention(q, k, v, impl=impl, block_size=16))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_blocked_vjp_under_jit_and_vmap():
    """The custom VJP composes with jit and vmap (as the scanned model uses it)."""
    q, k, v = _qkv(b=3, t=40)
    f = lambda impl: jax.jit(jax.vmap(jax.grad(
        lambda q, k, v: attention.causal_attention(q[None], k[None], v[None], impl=impl,
                                                   block_size=16).sum())))
    np.testing.assert_allclose(np.asarray(f("blocked")(q, k, v)), np.asarray(f("reference")(q, k, v)),
                               atol=1e-5, rtol=1e-5)


def test_splash_block_choice():
    assert attention.splash_block(1024) == 512
    assert attention.splash_block(384) == 384
    assert attention.splash_block(640) == 128
    assert attention.splash_block(100) is None


def _fake_splash_kernel(t, n_head, block):
    """Stands in for the Pallas kernel on CPU: unscaled causal attention over [heads, T, D]."""
    def kernel(q_HTD, k_HTD, v_HTD):
        s = jnp.einsum("htd,hsd->hts", q_HTD, k_HTD)
        s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
        return jnp.einsum("hts,hsd->htd", jax.nn.softmax(s, -1), v_HTD)
    return kernel


def test_splash_wrapper_pads_scales_and_shards(monkeypatch):
    """The splash wrapper's head_dim padding, q scaling, layout and shard_map plumbing (the Pallas
    kernel itself needs a TPU) against the numpy reference, outside and inside a mesh."""
    from gpt2_jax import sharding
    monkeypatch.setattr(attention, "_splash_kernel", _fake_splash_kernel)
    q, k, v = _qkv(b=2, t=128, h=4, d=16)
    want = _dense_numpy(q, k, v)
    np.testing.assert_allclose(np.asarray(attention.splash_attention(q, k, v)), want, atol=1e-5)
    with sharding.activate(sharding.make_mesh()):
        got = jax.jit(attention.splash_attention)(q, k, v)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_masked_reference_ignores_padding():
    q, k, v = _qkv(b=1, t=10)
    mask = jnp.tril(jnp.ones((10, 10), bool)) & (jnp.arange(10) >= 3)[None, :]
    out = attention.reference_attention(q, k, v, mask[None])
    alone = attention.reference_attention(q[:, 3:], k[:, 3:], v[:, 3:])
    np.testing.assert_allclose(np.asarray(out[:, 3:]), np.asarray(alone), atol=1e-6)


def test_auto_resolves_per_backend():
    assert attention.resolve("auto", "cpu") == "blocked"
    assert attention.resolve("auto", "gpu") == "cudnn"
    assert attention.resolve("auto", "tpu") == "splash"
    assert attention.resolve("xla", "tpu") == "xla"


def test_accelerator_kernels_refuse_cpu():
    q, k, v = _qkv(t=8)
    for impl in ("cudnn", "splash"):
        with pytest.raises(ConfigError, match=impl):
            attention.causal_attention(q, k, v, impl=impl)


VARIANTS = [dict(attention=a, scan_layers=s, remat=r)
            for a in CPU_IMPLS for s in (True, False) for r in ("none",)] + [
    dict(attention="blocked", scan_layers=True, remat="full"),
    dict(attention="blocked", scan_layers=False, remat="dots"),
    dict(attention="xla", scan_layers=True, remat="dots_with_no_batch_dims")]


@pytest.fixture(scope="module")
def reference_outputs(tiny_cfg):
    cfg = tiny_cfg.replace(n_layer=3, attention="reference")
    params = model.init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 40), 0, cfg.vocab_size)
    loss = lambda p, c: jax.nn.log_softmax(model.forward(p, tokens, c))[..., 0].mean()
    ref = jax.value_and_grad(loss)(params, cfg)
    return cfg, params, tokens, loss, ref


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_model_variants_same_logits_and_grads(reference_outputs, variant):
    cfg, params, tokens, loss, (ref_val, ref_grad) = reference_outputs
    c = cfg.replace(**variant)
    val, grad = jax.value_and_grad(loss)(params, c)
    np.testing.assert_allclose(float(val), float(ref_val), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model.forward(params, tokens, c)),
                               np.asarray(model.forward(params, tokens, cfg)), atol=1e-5)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("per_layer_cache", [False, True])
@pytest.mark.parametrize("form", ["split", "decode_params"])
def test_split_layer_params_decode_like_stacked(reference_outputs, form, per_layer_cache):
    """forward_cached from per-layer params (model.split_layer_params / decode_params, the fast
    decode form) with a stacked or per-layer KV cache gives the stacked model's logits and cache,
    prefill and one decode step; a per-layer cache also works with stacked params."""
    cfg, params, tokens, _, _ = reference_outputs
    split = (model.split_layer_params if form == "split" else model.decode_params)(params)
    assert "h" not in split and f"h_{cfg.n_layer - 1}" in split and model.decode_params(split) is split
    outs = []
    for p, per_layer in ((params, False), (split, per_layer_cache), (params, per_layer_cache)):
        cache = model.init_cache(cfg, tokens.shape[0], 48, per_layer=per_layer)
        pos = jnp.broadcast_to(jnp.arange(40), tokens.shape)
        logits, cache = model.forward_cached(p, tokens, pos, cache, cfg)
        step, cache = model.forward_cached(p, tokens[:, -1:], pos[:, -1:] + 1, cache, cfg)
        assert isinstance(cache["k"], tuple) == per_layer
        outs.append((logits, step, jnp.stack(cache["k"]) if per_layer else cache["k"],
                     jnp.stack(cache["v"]) if per_layer else cache["v"]))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
