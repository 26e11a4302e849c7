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
    layout = sharding.Layout(sharding.make_mesh())  # the mesh comes as an argument, not ambient state
    got = jax.jit(lambda q, k, v: attention.splash_attention(q, k, v, layout=layout))(q, k, v)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_splash_falls_back_for_lengths_it_cannot_tile_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(attention, "_splash_kernel", _fake_splash_kernel)
    q, k, v = _qkv(b=1, t=100, h=2, d=16)
    with caplog.at_level("WARNING"):
        out = attention.splash_attention(q, k, v)
    np.testing.assert_allclose(np.asarray(out), _dense_numpy(q, k, v), atol=1e-5)
    assert "multiple of 128, got 100" in caplog.text


def _dense_dropout(q, k, v, key, rate, blk):
    """Dense causal attention whose probabilities are dropped with the blocked kernel's per-block
    keep-masks (attention._keep_mask), written as plain autodiff-able jnp."""
    b, t, h, d = q.shape
    s = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
    s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
    p = jax.nn.softmax(s, -1)
    keep = jnp.zeros((b, h, t, t), bool)
    for i, a in enumerate(range(0, t, blk)):
        e = min(a + blk, t)
        keep = keep.at[:, :, a:e, :e].set(attention._keep_mask(key, rate, i, (b, h, e - a, e)))
    p = jnp.where(keep, p / (1 - rate), 0.0)
    return jnp.einsum("bhts,bshd->bthd", p, v)


@pytest.mark.parametrize("t,blk", [(48, 16), (45, 16)])
def test_blocked_dropout_matches_dense_dropout_with_the_same_masks(t, blk):
    """The blocked kernel's attention dropout: values and gradients equal dense attention with the
    same keep-masks (so the backward pass regenerates exactly the forward's mask)."""
    q, k, v = _qkv(t=t)
    key, rate = jax.random.key(7), 0.3
    w = jax.random.normal(jax.random.key(9), q.shape)
    blocked = lambda q, k, v: attention.causal_attention(q, k, v, impl="blocked", block_size=blk,  # noqa: E731
                                                         dropout_rate=rate, dropout_rng=key)
    dense = lambda q, k, v: _dense_dropout(q, k, v, key, rate, blk)  # noqa: E731
    np.testing.assert_allclose(np.asarray(blocked(q, k, v)), np.asarray(dense(q, k, v)), atol=1e-5, rtol=1e-5)
    grad = lambda fn: jax.jit(jax.grad(lambda q, k, v: (fn(q, k, v) * w).sum(), argnums=(0, 1, 2)))(q, k, v)  # noqa: E731
    for a, b in zip(grad(blocked), grad(dense)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    no_drop = attention.causal_attention(q, k, v, impl="blocked", block_size=blk)
    assert not np.allclose(np.asarray(blocked(q, k, v)), np.asarray(no_drop), atol=1e-3)


def test_kernels_without_dropout_hand_it_to_blocked_and_say_so(caplog):
    q, k, v = _qkv(t=32)
    key = jax.random.key(3)
    with caplog.at_level("WARNING"):
        got = attention.causal_attention(q, k, v, impl="xla", dropout_rate=0.2, dropout_rng=key)
    want = attention.causal_attention(q, k, v, impl="blocked", dropout_rate=0.2, dropout_rng=key)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
    assert "attention='xla' has no attention dropout" in caplog.text


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
