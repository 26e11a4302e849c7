"""Pure losses and per-token log-probabilities, all in fp32 (training and evals share them)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gpt2_jax.config import GPT2Config
from gpt2_jax.model import forward


def target_log_probs(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """log p(target) under the softmax of the logits, fp32 [B, T]."""
    logits_BTV = logits_BTV.astype(jnp.float32)
    lse_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    picked_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    return picked_BT - lse_BT


def cross_entropy(logits_BTV: jax.Array, targets_BT: jax.Array,
                  weights_BT: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Weighted mean next-token cross-entropy (nats) and the total weight."""
    nll_BT = -target_log_probs(logits_BTV, targets_BT)
    if weights_BT is None:
        weights_BT = jnp.ones_like(nll_BT)
    weights_BT = weights_BT.astype(jnp.float32)
    total = weights_BT.sum()
    return (nll_BT * weights_BT).sum() / jnp.maximum(total, 1.0), total


def loss_fn(params: Any, batch: dict[str, jax.Array], cfg: GPT2Config,
            rng: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy of `batch['targets']` given `batch['inputs']` (optional `weights`).
    `rng` enables dropout. Returns (loss, metrics)."""
    logits_BTV = forward(params, batch["inputs"], cfg, rng=rng)
    loss, n_tokens = cross_entropy(logits_BTV, batch["targets"], batch.get("weights"))
    return loss, {"loss": loss, "tokens": n_tokens}


def score_tokens(params: Any, inputs_BT: jax.Array, targets_BT: jax.Array, cfg: GPT2Config,
                 key_mask_BT: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-position log p(targets_BT | inputs up to t) (fp32) and whether each target is the argmax."""
    logits_BTV = forward(params, inputs_BT, cfg, key_mask_BT=key_mask_BT)
    logp_BT = target_log_probs(logits_BTV, targets_BT)
    is_argmax_BT = jnp.argmax(logits_BTV, axis=-1) == targets_BT
    return logp_BT, is_argmax_BT
