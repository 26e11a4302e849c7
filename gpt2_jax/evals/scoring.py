"""The scoring core of every eval: batched, jit-compiled log-probabilities of chosen target tokens.

A request is a token sequence `seq` and a count `n`: the model reads seq[:-1] and we score its
predictions of the last n tokens of seq. Requests are sorted by length and packed into fixed-shape,
right-padded batches (lengths and scored counts rounded up to a few buckets, so each shape
compiles once), the batch dimension sharded over a 1-D `data` mesh of all devices. The LM head
runs only at scored positions, vocab-major and in row chunks, so a one-token LAMBADA target does
not pay for a [T, 50257] logit matrix. Log-probabilities are fp32; matmuls run in the config's
compute dtype (fp32 unless the config says otherwise). `Scorer.greedy` decodes the same way (KV
cache, head on one position per step, batch sharded over the mesh).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError
from gpt2_jax.model import decode_params, forward, forward_cached, init_cache, lm_head

_LEN_BUCKETS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
_SCORE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096)


def final_hidden(params: Any, tokens_BT: jax.Array, cfg: GPT2Config) -> jax.Array:
    """The model's last hidden states (after ln_f) for causal inputs [B, T]: `forward` minus the head."""
    return forward(params, tokens_BT, cfg, return_hidden=True)


def _hidden_cached(params, tokens_BT, positions_BT, cache, cfg: GPT2Config, token_mask_BT):
    """model.forward_cached, returning hidden states instead of logits (same masking rules)."""
    return forward_cached(params, tokens_BT, positions_BT, cache, cfg, token_mask_BT, return_hidden=True)


def _greedy(params, tokens_BT, mask_BT, eos_id, *, cfg: GPT2Config, n_new: int):
    """Greedy decoding of left-padded prompts with a KV cache; the LM head runs on one position per
    row and step. Stops early once every row has produced `eos_id` (-1: never)."""
    b, t = tokens_BT.shape
    lengths_B = mask_BT.sum(axis=1).astype(jnp.int32)
    positions_BT = jnp.maximum(jnp.cumsum(mask_BT, axis=1) - 1, 0).astype(jnp.int32)
    cache = init_cache(cfg, b, t + n_new, per_layer="h" not in params)
    h_BTD, cache = _hidden_cached(params, tokens_BT, positions_BT, cache, cfg, mask_BT)
    pick = lambda h_BD: jnp.argmax(lm_head(params, h_BD, cfg), axis=-1).astype(jnp.int32)
    first_B = pick(h_BTD[:, -1])
    out_BN = jnp.full((b, n_new), jnp.maximum(eos_id, 0), jnp.int32).at[:, 0].set(first_B)

    def cond(state):
        i, _, done_B, _ = state
        return (i < n_new) & ~jnp.all(done_B)

    def body(state):
        i, cache, done_B, out_BN = state
        h_B1D, cache = _hidden_cached(params, out_BN[:, i - 1][:, None], (lengths_B + i - 1)[:, None], cache,
                                      cfg, jnp.ones((b, 1), bool))
        tok_B = jnp.where(done_B, out_BN[:, i], pick(h_B1D[:, 0]))
        return i + 1, cache, done_B | (tok_B == eos_id), out_BN.at[:, i].set(tok_B)

    state = (jnp.int32(1), cache, first_B == eos_id, out_BN)
    return jax.lax.while_loop(cond, body, state)[3]


def lm_head_stats(h_ND: jax.Array, wte_VD: jax.Array, targets_N: jax.Array, cfg: GPT2Config,
                  allowed_V: jax.Array | None = None):
    """For N hidden states: log p(target) (fp32), whether the target attains the maximum logit,
    and (with `allowed_V`) whether it is allowed and attains the maximum over allowed tokens.
    Logits are computed vocab-major ([V, N]), which XLA:CPU reduces about twice as fast."""
    dt = jnp.dtype(cfg.dtype)
    logits_VN = jnp.einsum("vd,nd->vn", wte_VD.astype(dt), h_ND.astype(dt),
                           preferred_element_type=jnp.float32)
    max_N = jnp.max(logits_VN, axis=0)  # shared by the log-sum-exp and the greedy test
    lse_N = jnp.log(jnp.sum(jnp.exp(logits_VN - max_N), axis=0)) + max_N
    target_N = jnp.take_along_axis(logits_VN, targets_N[None, :], axis=0)[0]
    greedy_N = target_N >= max_N
    if allowed_V is None:
        return target_N - lse_N, greedy_N, greedy_N
    masked_max_N = jnp.max(jnp.where(allowed_V[:, None], logits_VN, -jnp.inf), axis=0)
    greedy_allowed_N = allowed_V[targets_N] & (target_N >= masked_max_N)
    return target_N - lse_N, greedy_N, greedy_allowed_N


def _score_batch(params, tokens_BT, pos_BK, targets_BK, allowed_V, *, cfg: GPT2Config, chunk: int):
    h_BTD = final_hidden(params, tokens_BT, cfg)
    h_BKD = jnp.take_along_axis(h_BTD, pos_BK[:, :, None], axis=1)
    b, k, d = h_BKD.shape
    n_chunks = k // chunk  # the caller makes k a multiple of chunk
    h_CBkD = h_BKD.reshape(b, n_chunks, chunk, d).transpose(1, 0, 2, 3)
    t_CBk = targets_BK.reshape(b, n_chunks, chunk).transpose(1, 0, 2)

    def head(args):
        h, t = args
        out = lm_head_stats(h.reshape(-1, d), params["wte"], t.reshape(-1), cfg, allowed_V)
        return tuple(x.reshape(t.shape) for x in out)

    outs = jax.lax.map(head, (h_CBkD, t_CBk))
    return tuple(x.transpose(1, 0, 2).reshape(b, k) for x in outs)


@dataclasses.dataclass(frozen=True)
class Scored:
    """Scores of one request's last n tokens: log-probs (nats), greedy flags, and greedy flags
    under the `allowed` vocabulary mask (equal to `greedy` when no mask was given)."""
    logp: np.ndarray
    greedy: np.ndarray
    greedy_allowed: np.ndarray


def _check_ids(seqs: Sequence[Sequence[int]], vocab_size: int) -> None:
    """Token ids outside the embedding table would be clamped silently by the gather: refuse them."""
    hi = max((max(s) for s in seqs if len(s)), default=0)
    lo = min((min(s) for s in seqs if len(s)), default=0)
    if hi >= vocab_size or lo < 0:
        raise InputError(f"token id {hi if hi >= vocab_size else lo} is outside the model's vocabulary "
                         f"[0, {vocab_size}); evaluate with the tokenizer the model was trained with.")


def _bucket(n: int, buckets: Sequence[int], cap: int) -> int:
    return min(cap, next((b for b in buckets if b >= n), cap))


class Scorer:
    """Scores requests with one model; holds the params replicated on a 1-D data mesh and reuses
    one compilation per (length, scored-count) bucket across calls."""

    def __init__(self, params: Any, cfg: GPT2Config, batch_size: int = 8, head_rows: int | None = None,
                 devices: Sequence[jax.Device] | None = None):
        devices = list(devices or jax.devices())
        # LM-head rows per step: [V, rows] logits stay cache-sized on CPU (measured ~2.5x faster at
        # 64 rows than at 1024); accelerators want big matmuls.
        head_rows = head_rows or (64 if devices[0].platform == "cpu" else 8192)
        self.cfg = cfg
        self.mesh = Mesh(np.asarray(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        n = len(devices)
        self.batch_size = max(n, math.ceil(batch_size / n) * n)
        self.head_rows = head_rows
        self._rep = NamedSharding(self.mesh, P())
        self._data = NamedSharding(self.mesh, P("data"))
        self.params = jax.device_put(params, self._rep)
        self._fns: dict[tuple[int, bool], Any] = {}
        self._greedy_fns: dict[int, Any] = {}

    def _fn(self, chunk: int, with_allowed: bool):
        key = (chunk, with_allowed)
        if key not in self._fns:
            fn = functools.partial(_score_batch, cfg=self.cfg, chunk=chunk)
            self._fns[key] = jax.jit(fn, in_shardings=(self._rep, self._data, self._data, self._data,
                                                       self._rep if with_allowed else None),
                                     out_shardings=self._data)
        return self._fns[key]

    def score(self, requests: Sequence[tuple[Sequence[int], int]],
              allowed_V: np.ndarray | None = None) -> list[Scored]:
        """Score each (seq, n): log p(seq[i] | seq[:i]) for the last n positions i of seq."""
        max_len = self.cfg.n_positions
        for i, (seq, n) in enumerate(requests):
            if not 1 <= n <= len(seq) - 1 or len(seq) - 1 > max_len:
                raise InputError(f"request {i}: {len(seq)} tokens scoring the last {n}; need 1 <= n < "
                                 f"len(seq) <= n_positions + 1 = {max_len + 1}. Truncate the context first.")
        _check_ids([seq for seq, _ in requests], self.cfg.vocab_size)
        order = sorted(range(len(requests)), key=lambda i: (len(requests[i][0]), requests[i][1]))
        results: list[Scored | None] = [None] * len(requests)
        allowed = None if allowed_V is None else jnp.asarray(allowed_V, bool)
        bs = self.batch_size
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            t = _bucket(max(len(requests[i][0]) - 1 for i in idx), _LEN_BUCKETS, max_len)
            k = _bucket(max(requests[i][1] for i in idx), _SCORE_BUCKETS, t)
            chunk = min(k, max(1, self.head_rows // bs))  # head rows per step: bounds V x rows memory
            k = math.ceil(k / chunk) * chunk
            tokens = np.zeros((bs, t), np.int32)
            pos = np.zeros((bs, k), np.int32)
            targets = np.zeros((bs, k), np.int32)
            for row, i in enumerate(idx):
                seq, n = np.asarray(requests[i][0], np.int32), requests[i][1]
                m = len(seq) - 1
                tokens[row, :m] = seq[:-1]
                pos[row, :n] = np.arange(m - n, m)
                targets[row, :n] = seq[m - n + 1:]
            with jax.set_mesh(self.mesh):
                outs = self._fn(chunk, allowed is not None)(self.params, tokens, pos, targets, allowed)
            logp, greedy, greedy_allowed = (np.asarray(x) for x in outs)
            for row, i in enumerate(idx):
                n = requests[i][1]
                results[i] = Scored(logp[row, :n].astype(np.float64), greedy[row, :n],
                                    greedy_allowed[row, :n])
        return results  # type: ignore[return-value]


    def greedy(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
               eos_id: int | None = None) -> list[list[int]]:
        """Greedy continuations (`max_new_tokens` each; after `eos_id` a row repeats it) of prompts
        left-truncated to n_positions - max_new_tokens tokens, batched like `score`."""
        keep = self.cfg.n_positions - max_new_tokens
        if max_new_tokens < 1 or keep < 1:
            raise InputError(f"max_new_tokens={max_new_tokens} must be in [1, n_positions={self.cfg.n_positions}).")
        rows = [list(p)[-keep:] for p in prompts]
        if any(not r for r in rows):
            raise InputError("an empty prompt cannot be continued; pass at least one token.")
        _check_ids(rows, self.cfg.vocab_size)
        fn = self._greedy_fns.get(max_new_tokens)
        if fn is None:
            fn = jax.jit(functools.partial(_greedy, cfg=self.cfg, n_new=max_new_tokens),
                         in_shardings=(self._rep, self._data, self._data, None), out_shardings=self._data)
            self._greedy_fns[max_new_tokens] = fn
        # Per-layer weights decode faster than slices of the stacked ones (BENCHMARKS.md, "Decode");
        # the copy lives for this call only, so the scorer does not keep the weights twice.
        per_layer = decode_params(self.params)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out: list[list[int]] = [[] for _ in rows]
        bs = self.batch_size
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            t = _bucket(max(len(rows[i]) for i in idx), _LEN_BUCKETS, keep)
            tokens, mask = np.zeros((bs, t), np.int32), np.zeros((bs, t), bool)
            mask[:, -1] = True  # padding rows decode from token 0 and are dropped
            for row, i in enumerate(idx):  # left-pad: every prompt ends at the last slot
                tokens[row, t - len(rows[i]):], mask[row, t - len(rows[i]):] = rows[i], True
            with jax.set_mesh(self.mesh):
                new = np.asarray(fn(per_layer, tokens, mask, np.int32(-1 if eos_id is None else eos_id)))
            for row, i in enumerate(idx):
                out[i] = [int(x) for x in new[row]]
        return out


# ----------------------------------------------------------------------------- request builders
def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval-harness `_encode_pair`: trailing spaces of the context move to the continuation and
    the continuation's tokens are those of encode(context + continuation) after encode(context)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx):]


def pair_request(ctx: Sequence[int], cont: Sequence[int], max_len: int) -> tuple[list[int], int]:
    """(seq, n) scoring `cont` after `ctx`, keeping the last max_len + 1 tokens (left truncation,
    as lm-eval-harness does: the model reads at most max_len of them)."""
    seq = (list(ctx) + list(cont))[-(max_len + 1):]
    return seq, min(len(cont), len(seq) - 1)


def rolling_requests(tokens: Sequence[int], prefix: int, context: int, stride: int) -> list[tuple[list[int], int]]:
    """Windows that score every token of `tokens` once, the first conditioned on `prefix` (eot).

    The first window scores the first `context` tokens; each later window scores the next `stride`
    tokens with as much preceding context as fits (context - stride tokens at least). stride =
    context is exactly lm-eval-harness `loglikelihood_rolling` (get_rolling_token_windows with
    context_len=1 + make_disjoint_window); a smaller stride is a sliding window."""
    if not 1 <= stride <= context:
        raise InputError(f"stride={stride} must be in [1, context={context}].")
    seq = [prefix] + list(tokens)
    total = len(seq)
    if total < 2:
        return []
    end = min(context + 1, total)
    out = [(seq[:end], end - 1)]
    while end < total:
        new_end = min(end + stride, total)
        out.append((seq[max(0, new_end - context - 1):new_end], new_end - end))
        end = new_end
    return out


def total_logprob(scored: Sequence[Scored]) -> float:
    return float(sum(s.logp.sum() for s in scored))
