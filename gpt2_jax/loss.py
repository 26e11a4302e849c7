"""Pure losses and per-token log-probabilities, all in fp32. Training (`loss_fn`) and the evals
(`head_scores`) share one definition of log p(target): `_lse_and_target_logit`."""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from gpt2_jax.config import GPT2Config
from gpt2_jax.model import forward, lm_head
from gpt2_jax.sharding import Layout, constrain

_LOGITS_AXES = ("activation_batch", "activation_length", "activation_vocab")


def _lse_and_target_logit(logits: jax.Array, targets: jax.Array, axis: int = -1) -> tuple[jax.Array, jax.Array]:
    """log-sum-exp over the vocabulary `axis` and the target's logit (fp32); log p = target - lse."""
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=axis)
    return lse, jnp.take_along_axis(logits, jnp.expand_dims(targets, axis), axis=axis).squeeze(axis)


def target_log_probs(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """log p(target) under the softmax of the logits, fp32 [B, T]."""
    lse_BT, picked_BT = _lse_and_target_logit(logits_BTV, targets_BT)
    return picked_BT - lse_BT


def _weights(weights_BT: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
    return jnp.ones(shape, jnp.float32) if weights_BT is None else weights_BT.astype(jnp.float32)


def cross_entropy(logits_BTV: jax.Array, targets_BT: jax.Array,
                  weights_BT: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Weighted mean next-token cross-entropy (nats) and the total weight."""
    nll_BT = -target_log_probs(logits_BTV, targets_BT)
    weights_BT = _weights(weights_BT, nll_BT.shape)
    total = weights_BT.sum()
    return (nll_BT * weights_BT).sum() / jnp.maximum(total, 1.0), total


def fused_cross_entropy(h_BTD: jax.Array, wte_VD: jax.Array, targets_BT: jax.Array,
                        weights_BT: jax.Array | None = None, *, cfg: GPT2Config,
                        chunk: int | None = None, layout: Layout | None = None) -> tuple[jax.Array, jax.Array]:
    """`cross_entropy(lm_head({"wte": wte}, h, cfg), targets, weights)` without the [B, T, V]
    logits: the tied head and the loss run `chunk` (default cfg.loss_chunk) positions at a time,
    and the forward pass of each chunk also forms its gradients (softmax - onehot, then the two
    head matmuls in cfg.dtype), so the backward pass only scales them. Peak memory holds
    [B, chunk, V] logits instead of [B, T, V] (and no saved logits for the backward pass); FLOPs
    are those of the unfused head + loss; logits, softmax and sums stay fp32. With a `layout`
    whose batch axes are split, each device scans its own rows (see _sharded_nll_and_grads)."""
    b, t, _ = h_BTD.shape
    weights_BT = _weights(weights_BT, (b, t))
    chunk = max(1, min(int(chunk or cfg.loss_chunk or t), t))
    pad = math.ceil(t / chunk) * chunk - t
    if pad:  # padded positions get weight 0: they add nothing to the loss or the gradients
        h_BTD = jnp.pad(h_BTD, ((0, 0), (0, pad), (0, 0)))
        targets_BT = jnp.pad(targets_BT, ((0, 0), (0, pad)))
        weights_BT = jnp.pad(weights_BT, ((0, 0), (0, pad)))
    total = weights_BT.sum()
    nll = _fused_nll_sum(h_BTD, wte_VD, targets_BT, weights_BT, chunk, cfg, layout)
    return nll / jnp.maximum(total, 1.0), total


def _by_chunk(x, chunk: int):
    """[B, T, ...] -> [T / chunk, B, chunk, ...]: the scan runs over chunks of positions, so every
    chunk keeps the batch dimension (and its sharding over data/fsdp)."""
    return x.reshape(x.shape[0], x.shape[1] // chunk, chunk, *x.shape[2:]).swapaxes(0, 1)


def _nll_and_grads(h_BTD, wte_VD, targets_BT, weights_BT, chunk: int, cfg: GPT2Config, with_grads: bool,
                   constrain_logits=lambda x: x):
    dtype = cfg.dtype
    w_VD = wte_VD.astype(dtype)

    def body(carry, xs):
        nll, dwte_VD = carry
        h_BCD, t_BC, w_BC = xs
        logits_BCV = constrain_logits(lm_head({"wte": wte_VD}, h_BCD, cfg))
        lse_BC, picked_BC = _lse_and_target_logit(logits_BCV, t_BC)
        nll = nll + ((lse_BC - picked_BC) * w_BC).sum()
        if not with_grads:
            return (nll, dwte_VD), None
        # d(sum_t w_t nll_t) / d logits = w * (softmax - onehot(target))
        onehot_BCV = jax.nn.one_hot(t_BC, logits_BCV.shape[-1], dtype=jnp.float32)
        dlogits_BCV = ((jnp.exp(logits_BCV - lse_BC[..., None]) - onehot_BCV) * w_BC[..., None]).astype(dtype)
        dh_BCD = jnp.einsum("bcv,vd->bcd", dlogits_BCV, w_VD, preferred_element_type=jnp.float32)
        dwte_VD = dwte_VD + jnp.einsum("bcv,bcd->vd", dlogits_BCV, h_BCD.astype(dtype),
                                       preferred_element_type=jnp.float32)
        return (nll, dwte_VD), dh_BCD

    init = (jnp.zeros((), jnp.float32), jnp.zeros(wte_VD.shape, jnp.float32) if with_grads else None)
    xs = (_by_chunk(h_BTD, chunk), _by_chunk(targets_BT, chunk), _by_chunk(weights_BT, chunk))
    (nll, dwte_VD), dh = jax.lax.scan(body, init, xs)
    if not with_grads:
        return nll, None
    dh_BTD = dh.swapaxes(0, 1).reshape(h_BTD.shape).astype(h_BTD.dtype)
    return nll, (dh_BTD, dwte_VD.astype(wte_VD.dtype))


def _sharded_nll_and_grads(h_BTD, wte_VD, targets_BT, weights_BT, chunk: int, cfg: GPT2Config,
                           layout: Layout | None, with_grads: bool):
    """`_nll_and_grads` with each device scanning its own rows: when the layout splits the batch,
    a shard_map over its batch axes keeps the loss and the head's weight gradient as per-device
    partial sums across chunks and reduces them once, instead of once per chunk (GSPMD
    all-reduces a carried [V, D] sum in every scan iteration)."""
    axes = () if layout is None else layout.batch_axes()
    if not axes:
        return _nll_and_grads(h_BTD, wte_VD, targets_BT, weights_BT, chunk, cfg, with_grads,
                              lambda x: constrain(x, _LOGITS_AXES, layout))
    # rows are device-local inside: constrain only the vocab dim (a bare spec: shard_map's mesh)
    vocab_spec = P(None, None, layout.spec(("activation_vocab",))[0])

    def local(h, wte, targets, weights):
        nll, grads = _nll_and_grads(h, wte, targets, weights, chunk, cfg, with_grads,
                                    lambda x: jax.lax.with_sharding_constraint(x, vocab_spec))
        nll = jax.lax.psum(nll, axes)
        if grads is None:
            return nll, None
        dh, dwte = grads
        return nll, (dh, jax.lax.psum(dwte, axes))

    rows = P(axes)
    return jax.shard_map(local, mesh=layout.mesh, in_specs=(rows, P(), rows, rows),
                         out_specs=(P(), (rows, P()) if with_grads else None),
                         axis_names=set(axes), check_vma=False)(h_BTD, wte_VD, targets_BT, weights_BT)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _fused_nll_sum(h_BTD, wte_VD, targets_BT, weights_BT, chunk, cfg, layout):
    return _sharded_nll_and_grads(h_BTD, wte_VD, targets_BT, weights_BT, chunk, cfg, layout, with_grads=False)[0]


def _fused_fwd(h_BTD, wte_VD, targets_BT, weights_BT, chunk, cfg, layout):
    return _sharded_nll_and_grads(h_BTD, wte_VD, targets_BT, weights_BT, chunk, cfg, layout, with_grads=True)


def _fused_bwd(chunk, cfg, layout, grads, g):
    dh_BTD, dwte_VD = grads
    return (g * dh_BTD).astype(dh_BTD.dtype), (g * dwte_VD).astype(dwte_VD.dtype), None, None


_fused_nll_sum.defvjp(_fused_fwd, _fused_bwd)


def loss_fn(params: Any, batch: dict[str, jax.Array], cfg: GPT2Config, rng: jax.Array | None = None,
            layout: Layout | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy of `batch['targets']` given `batch['inputs']` (optional `weights`).
    `rng` enables dropout; `layout` shards activations. With `cfg.loss_chunk`, the head and loss run
    fused by chunks of positions (`fused_cross_entropy`). Returns (loss, metrics)."""
    if cfg.loss_chunk:
        h_BTD = forward(params, batch["inputs"], cfg, rng=rng, return_hidden=True, layout=layout)
        loss, n_tokens = fused_cross_entropy(h_BTD, params["wte"], batch["targets"], batch.get("weights"),
                                             cfg=cfg, layout=layout)
    else:
        logits_BTV = forward(params, batch["inputs"], cfg, rng=rng, layout=layout)
        loss, n_tokens = cross_entropy(logits_BTV, batch["targets"], batch.get("weights"))
    return loss, {"loss": loss, "tokens": n_tokens}


def score_tokens(params: Any, inputs_BT: jax.Array, targets_BT: jax.Array, cfg: GPT2Config,
                 key_mask_BT: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-position log p(targets_BT | inputs up to t) (fp32) and whether each target is the argmax."""
    logits_BTV = forward(params, inputs_BT, cfg, key_mask_BT=key_mask_BT)
    logp_BT = target_log_probs(logits_BTV, targets_BT)
    is_argmax_BT = jnp.argmax(logits_BTV, axis=-1) == targets_BT
    return logp_BT, is_argmax_BT


def head_scores(h_ND: jax.Array, wte_VD: jax.Array, targets_N: jax.Array, cfg: GPT2Config,
                allowed_V: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The evals' view of N hidden states: log p(target) (fp32), whether the target attains the
    maximum logit, and (with `allowed_V`) whether it is allowed and attains the maximum over the
    allowed tokens (else the same as the second). The logits are formed vocab-major ([V, N]),
    which XLA:CPU reduces about twice as fast as [N, V]."""
    logits_VN = jnp.einsum("vd,nd->vn", wte_VD.astype(cfg.dtype), h_ND.astype(cfg.dtype),
                           preferred_element_type=jnp.float32)  # lm_head, transposed
    lse_N, target_N = _lse_and_target_logit(logits_VN, targets_N, axis=0)
    greedy_N = target_N >= jnp.max(logits_VN, axis=0)
    if allowed_V is None:
        return target_N - lse_N, greedy_N, greedy_N
    masked_max_N = jnp.max(jnp.where(allowed_V[:, None], logits_VN, -jnp.inf), axis=0)
    return target_N - lse_N, greedy_N, allowed_V[targets_N] & (target_N >= masked_max_N)
