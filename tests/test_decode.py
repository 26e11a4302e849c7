"""gpt2_jax.decode: the KV-cache runtime gives model.forward's logits, per-layer and stacked, in
chunks (prefill, one step, the rest); DecodeParams pass through prepare unchanged."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpt2_jax import decode, model
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError

_forward_cached = jax.jit(decode.forward_cached, static_argnums=4)


@pytest.fixture(scope="module")
def small():
    cfg = GPT2Config(n_layer=3, n_embd=64, n_head=4, n_positions=128, vocab_size=512, attn_block_size=32)
    params = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape),
                          model.init_params(cfg, jax.random.key(0)))
    tokens = np.random.default_rng(5).integers(0, cfg.vocab_size, (2, 100))
    return cfg, params, tokens, np.asarray(model.forward(params, tokens, cfg))


@pytest.mark.parametrize("layout", decode.LAYOUTS)
def test_forward_cached_in_chunks_equals_forward(small, layout):
    cfg, params, tokens, full = small
    dparams = decode.prepare(params, layout=layout)
    assert dparams.stacked == (layout == "stacked") and decode.prepare(dparams) is dparams
    cache = decode.init_cache(cfg, dparams, 2, 128)
    assert isinstance(cache.k, tuple) == (layout == "per_layer")
    positions = np.broadcast_to(np.arange(100), (2, 100))
    chunks = []
    for lo, hi in ((0, 37), (37, 38), (38, 100)):  # prefill, one decode step, the rest
        logits, cache = _forward_cached(dparams, jnp.asarray(tokens[:, lo:hi]), jnp.asarray(positions[:, lo:hi]),
                                        cache, cfg)
        chunks.append(np.asarray(logits))
    assert int(cache.index) == 100 and bool(cache.mask[:, :100].all()) and not bool(cache.mask[:, 100:].any())
    np.testing.assert_allclose(np.concatenate(chunks, 1), full, atol=1e-4, rtol=0)


def test_per_layer_and_stacked_caches_hold_the_same_keys(small):
    cfg, params, tokens, _ = small
    caches = []
    for layout in decode.LAYOUTS:
        dparams = decode.prepare(params, layout=layout)
        cache = decode.init_cache(cfg, dparams, 2, 48)
        _, cache = _forward_cached(dparams, jnp.asarray(tokens[:, :40]), jnp.broadcast_to(jnp.arange(40), (2, 40)),
                                   cache, cfg)
        caches.append(cache)
    per_layer, stacked = caches
    np.testing.assert_allclose(np.stack(per_layer.k), np.asarray(stacked.k), atol=1e-5)
    np.testing.assert_allclose(np.stack(per_layer.v), np.asarray(stacked.v), atol=1e-5)


def test_prepare_casts_weights_but_keeps_layer_norms_fp32(small):
    cfg, params, *_ = small
    d = decode.prepare(params, dtype="bfloat16", layout="per_layer")
    assert d.top["wte"].dtype == jnp.bfloat16 and d.layers[0]["attn"]["c_attn"]["kernel"].dtype == jnp.bfloat16
    assert d.top["ln_f"]["scale"].dtype == jnp.float32 and d.layers[0]["ln_1"]["bias"].dtype == jnp.float32
    assert decode.default_layout() == ("per_layer" if jax.default_backend() == "cpu" else "stacked")
    with pytest.raises(InputError, match="layout='rows' is not one of"):
        decode.prepare(params, layout="rows")
