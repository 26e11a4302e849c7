"""Losses and per-token scores against a direct float64 computation from the logits."""
import jax
import jax.numpy as jnp
import numpy as np

from gpt2_jax import loss, model


def _np_logp(logits, targets):
    x = np.asarray(logits, np.float64)
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    return np.take_along_axis(x, np.asarray(targets)[..., None], -1)[..., 0] - lse


def test_loss_and_scores(tiny_cfg):
    params = model.init_params(tiny_cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (3, 33), 0, tiny_cfg.vocab_size)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = model.forward(params, inputs, tiny_cfg)
    ref = _np_logp(logits, targets)

    value, metrics = loss.loss_fn(params, {"inputs": inputs, "targets": targets}, tiny_cfg)
    np.testing.assert_allclose(float(value), -ref.mean(), rtol=1e-5)
    assert float(metrics["tokens"]) == inputs.size

    weights = (jnp.arange(32) % 3 == 0).astype(jnp.float32)[None].repeat(3, 0)
    wvalue, _ = loss.loss_fn(params, {"inputs": inputs, "targets": targets, "weights": weights}, tiny_cfg)
    np.testing.assert_allclose(float(wvalue), -(ref * weights).sum() / weights.sum(), rtol=1e-5)

    logp, is_argmax = loss.score_tokens(params, inputs, targets, tiny_cfg)
    np.testing.assert_allclose(np.asarray(logp), ref, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(is_argmax), np.argmax(np.asarray(logits), -1) == np.asarray(targets))


def test_padding_mask_does_not_change_real_tokens(tiny_cfg):
    """Right padding with key_mask gives the unpadded sequence's scores at the real positions."""
    params = model.init_params(tiny_cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(2), (1, 20), 0, tiny_cfg.vocab_size)
    padded = jnp.concatenate([tokens, jnp.zeros((1, 12), jnp.int32)], axis=1)
    mask = jnp.arange(32)[None] < 20
    a, _ = loss.score_tokens(params, tokens[:, :-1], tokens[:, 1:], tiny_cfg)
    b, _ = loss.score_tokens(params, padded[:, :-1], padded[:, 1:], tiny_cfg, key_mask_BT=mask[:, :-1])
    np.testing.assert_allclose(np.asarray(b[:, :19]), np.asarray(a), atol=1e-5)
