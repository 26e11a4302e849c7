"""Text generation with a KV cache: greedy or temperature / top-k / top-p sampling.

Prompts of unequal length are left-padded and each row's positions count only its real tokens, so
every row sees exactly what it would alone. Prefill and the whole decode loop run in one jitted
function; prompt length and the number of new tokens are rounded up to powers of two (the real
count is a traced value), so repeated calls reuse one compilation per bucket.
"""
from __future__ import annotations

import functools
import math
import sys
import types
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gpt2_jax.config import DTYPES, GPT2Config
from gpt2_jax.decode import DecodeParams, forward_cached, init_cache, prepare
from gpt2_jax.errors import InputError
from gpt2_jax.model import lm_head
from gpt2_jax.sharding import Layout


def _bucket(n: int, minimum: int = 8) -> int:
    """The smallest power of two >= n (at least `minimum`): the static shape for n."""
    return max(minimum, 1 << (max(n, 1) - 1).bit_length())


def _sample(logits_BV, key, temperature, top_p, *, greedy: bool, top_k: int | None, use_top_p: bool):
    """Next token ids [B]: argmax, or a draw from softmax(logits / T) restricted to the top_k most
    likely tokens and then to the smallest prefix of them whose probability mass reaches top_p."""
    if greedy:
        return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    logits_BV = logits_BV / temperature
    k = top_k or (logits_BV.shape[-1] if use_top_p else None)
    if k is None:
        return jax.random.categorical(key, logits_BV, axis=-1).astype(jnp.int32)
    vals_BC, ids_BC = jax.lax.top_k(logits_BV, k)  # sorted, most likely first
    if use_top_p:
        probs_BC = jax.nn.softmax(vals_BC, axis=-1)
        mass_before_BC = jnp.cumsum(probs_BC, axis=-1) - probs_BC
        vals_BC = jnp.where(mass_before_BC < top_p, vals_BC, -jnp.inf)
    choice_B = jax.random.categorical(key, vals_BC, axis=-1)
    return jnp.take_along_axis(ids_BC, choice_B[:, None], axis=-1)[:, 0].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg", "n_slots", "greedy", "top_k", "use_top_p",
                                             "return_logits", "cache_dtype", "layout"))
def _decode(params: DecodeParams, tokens_BT, mask_BT, n_new, key, temperature, top_p, eos_id, *, cfg: GPT2Config,
            n_slots: int, greedy: bool, top_k: int | None, use_top_p: bool, return_logits: bool,
            cache_dtype: str | None, layout: Layout | None):
    """Prefill the left-padded prompts, then decode up to `n_new` (<= n_slots) tokens on device.
    Returns new tokens [B, n_slots] (eos after a row ends) and, if asked, their logits [B, n_slots, V],
    replicated over the layout's mesh so every process reads all rows."""
    b, t = tokens_BT.shape
    lengths_B = mask_BT.sum(axis=1).astype(jnp.int32)
    positions_BT = jnp.maximum(jnp.cumsum(mask_BT, axis=1) - 1, 0).astype(jnp.int32)
    cache = init_cache(cfg, params, b, t + n_slots, cache_dtype)
    # Prefill: only the last position's logits are needed, so skip the [B, T, V] head.
    h_BTD, cache = forward_cached(params, tokens_BT, positions_BT, cache, cfg, token_mask_BT=mask_BT,
                                  return_hidden=True)
    last_logits_BV = lm_head(params.top, h_BTD[:, -1], cfg)
    pad = jnp.maximum(eos_id, 0).astype(jnp.int32)
    sample = functools.partial(_sample, temperature=temperature, top_p=top_p, greedy=greedy, top_k=top_k,
                               use_top_p=use_top_p)

    def emit(i, logits_BV, done_B, out_BN, logits_BNV):
        tok_B = jnp.where(done_B, pad, sample(logits_BV, jax.random.fold_in(key, i)))
        out_BN = out_BN.at[:, i].set(tok_B)
        if return_logits:
            logits_BNV = logits_BNV.at[:, i].set(logits_BV)
        return done_B | (tok_B == eos_id), out_BN, logits_BNV

    def cond(state):
        i, _, done_B, _, _ = state
        return (i < n_new) & ~jnp.all(done_B)

    def body(state):
        i, cache, done_B, out_BN, logits_BNV = state
        prev_B1 = out_BN[:, i - 1][:, None]
        logits_B1V, cache = forward_cached(params, prev_B1, (lengths_B + i - 1)[:, None], cache, cfg)
        return (i + 1, cache) + emit(i, logits_B1V[:, 0], done_B, out_BN, logits_BNV)

    out_BN = jnp.full((b, n_slots), pad, jnp.int32)
    logits_BNV = jnp.zeros((b, n_slots, cfg.vocab_size), jnp.float32) if return_logits else None
    state = emit(0, last_logits_BV, jnp.zeros((b,), bool), out_BN, logits_BNV)
    _, _, _, out_BN, logits_BNV = jax.lax.while_loop(cond, body, (jnp.int32(1), cache) + state)
    if layout is not None:
        out_BN = layout.constrain(out_BN, (None, None))
        logits_BNV = None if logits_BNV is None else layout.constrain(logits_BNV, (None, None, None))
    return out_BN, logits_BNV


def _rows(prompt_tokens: Any) -> tuple[list[np.ndarray], str]:
    """The prompts as 1-D int arrays, and the input kind: 'list', 'lists', 'array1' or 'array2'."""
    if isinstance(prompt_tokens, (np.ndarray, jax.Array)):
        arr = np.asarray(prompt_tokens)
        if arr.ndim not in (1, 2) or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
            raise InputError(f"prompt_tokens array must be int [T] or [B, T], got shape {arr.shape} dtype "
                             f"{arr.dtype}; pass token ids from the tokenizer.")
        return (list(arr.astype(np.int64)) if arr.ndim == 2 else [arr.astype(np.int64)]), f"array{arr.ndim}"
    if not isinstance(prompt_tokens, (list, tuple)):
        raise InputError(f"prompt_tokens must be a list of ints, a list of lists, or an int array; got "
                         f"{type(prompt_tokens).__name__}.")
    is_int = lambda x: isinstance(x, (int, np.integer)) and not isinstance(x, bool)
    if all(is_int(x) for x in prompt_tokens):
        return [np.asarray(prompt_tokens, np.int64).reshape(-1)], "list"
    rows = []
    for i, row in enumerate(prompt_tokens):
        if not isinstance(row, (list, tuple, np.ndarray)) or not all(is_int(x) for x in row):
            raise InputError(f"prompt {i} is {type(row).__name__} {str(row)[:40]}, not a sequence of int token ids; "
                             "pass a list of ints or a list of lists of ints.")
        rows.append(np.asarray(row, np.int64).reshape(-1))
    return rows, "lists"


def _check(rows, cfg, max_new_tokens, temperature, top_k, top_p, eos_id) -> None:
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 0.")
    if not rows:
        raise InputError("prompt_tokens is empty; pass at least one prompt.")
    for i, row in enumerate(rows):
        if row.size == 0:
            raise InputError(f"prompt {i} is empty; generation needs at least one token (start from the "
                             "tokenizer's eot_id for unconditional samples).")
        bad = np.flatnonzero((row < 0) | (row >= cfg.vocab_size))
        if bad.size:
            raise InputError(f"prompt {i} has token id {int(row[bad[0]])} at position {int(bad[0])}, outside the "
                             f"model's vocabulary [0, {cfg.vocab_size}); encode prompts with the model's tokenizer.")
    t = max(row.size for row in rows)
    if t + max_new_tokens > cfg.n_positions:
        fixes = [f"shorten the prompt to at most {cfg.n_positions - max_new_tokens} tokens (keep its end)"
                 if max_new_tokens < cfg.n_positions else "",
                 f"lower max_new_tokens to at most {cfg.n_positions - t}" if t < cfg.n_positions else ""]
        fix = " or ".join(f for f in fixes if f)
        raise InputError(f"prompt of {t} tokens + max_new_tokens={max_new_tokens} = {t + max_new_tokens} exceeds the "
                         f"model's context of n_positions={cfg.n_positions} tokens; {fix}.")
    if not (isinstance(temperature, (int, float, np.floating)) and math.isfinite(temperature) and temperature >= 0):
        raise InputError(f"temperature={temperature!r} must be a finite number >= 0 (0 = greedy).")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1):
        raise InputError(f"top_k={top_k!r} must be None or an integer >= 1.")
    if top_p is not None and not (isinstance(top_p, (int, float, np.floating)) and 0.0 < top_p <= 1.0):
        raise InputError(f"top_p={top_p!r} must be None or a number in (0, 1].")
    if eos_id is not None and not (isinstance(eos_id, (int, np.integer)) and 0 <= eos_id < cfg.vocab_size):
        raise InputError(f"eos_id={eos_id!r} must be None or a token id in [0, {cfg.vocab_size}).")


def generate(params: Any, cfg: GPT2Config, prompt_tokens: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
             max_new_tokens: int = 32, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, rng: jax.Array | int | None = None, eos_id: int | None = None,
             cache_dtype: Any = None, return_logits: bool = False, weights_dtype: Any = None,
             layout: Layout | None = None, batch_size: int | None = None):
    """Continue prompt(s) by up to `max_new_tokens` tokens; returns prompt + continuation.

    A list of ints gives a list of ints; a list of lists gives a list of lists (each may differ in
    length); an int array [T] or [B, T] gives an array [T + N] or [B, T + N]. temperature 0 is
    greedy; otherwise tokens are sampled with `rng` (a key or int seed; default key 0). After `eos_id`
    a list row stops (eos included) and an array row is filled with eos_id. With `return_logits`,
    also returns the model's logits for each new token ([B, N, V] array, or one [n, V] per row).

    `params` may be the model's params or `decode.prepare(params)` (pass that when calling
    repeatedly: the decode form is otherwise made per call). `weights_dtype` (e.g. "bfloat16")
    decodes from a copy of the weights rounded to that dtype, computed in cfg.dtype: on TPU/GPU
    each token then reads half the bytes; XLA:CPU converts such weights back to fp32 ahead of its
    matmuls, so on CPU it saves neither time nor memory (BENCHMARKS.md reports the logit error).
    `layout` shards the prompts' batch over its mesh (every process calls generate with the same
    arguments and gets all rows back); `batch_size` decodes the prompts in batches of that many,
    sorted by length, instead of all at once (batch b samples with fold_in(rng, b))."""
    rows, kind = _rows(prompt_tokens)
    _check(rows, cfg, max_new_tokens, temperature, top_k, top_p, eos_id)
    if weights_dtype is not None:
        try:
            weights_dtype = jnp.dtype(weights_dtype).name
        except TypeError:
            weights_dtype = repr(weights_dtype)
        if weights_dtype not in DTYPES:
            raise InputError(f"weights_dtype={weights_dtype} must be None or one of {DTYPES}.")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise InputError(f"batch_size={batch_size!r} must be None or a positive integer.")
    b, n = len(rows), int(max_new_tokens)
    greedy = float(temperature) == 0.0
    use_top_p = top_p is not None and top_p < 1.0 and not greedy
    top_k = None if (top_k is None or greedy) else min(int(top_k), cfg.vocab_size)
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = jax.random.key(0 if rng is None else int(rng))

    new_BN = np.zeros((b, n), np.int64)
    logits_BNV = np.zeros((b, n if return_logits else 0, cfg.vocab_size), np.float32)
    if n > 0:
        dparams = prepare(params, dtype=weights_dtype)
        if layout is not None:
            dparams = layout.put(dparams)
        if batch_size is None:
            batches = [list(range(b))]
        else:  # similar lengths together: less left padding per batch
            order = sorted(range(b), key=lambda i: rows[i].size)
            batches = [order[s:s + batch_size] for s in range(0, b, batch_size)]
        ways = 1 if layout is None else layout.data_parallel_size
        for j, idx in enumerate(batches):
            key = rng if batch_size is None else jax.random.fold_in(rng, j)
            t_pad = _bucket(max(rows[i].size for i in idx))
            n_rows = -(-len(idx) // ways) * ways
            tokens_BT, mask_BT = np.zeros((n_rows, t_pad), np.int32), np.zeros((n_rows, t_pad), bool)
            mask_BT[:, -1] = True  # rows that only pad the batch to the mesh decode from token 0; dropped
            for r, i in enumerate(idx):  # left-pad: every prompt ends at the last slot
                tokens_BT[r, t_pad - rows[i].size:], mask_BT[r, t_pad - rows[i].size:] = rows[i], True
            if layout is not None:
                tokens_BT, mask_BT = layout.put_batch(tokens_BT), layout.put_batch(mask_BT)
            out_BN, lg = _decode(dparams, tokens_BT, mask_BT, np.int32(n), key,
                                 np.float32(temperature or 1.0), np.float32(top_p or 1.0),
                                 np.int32(-1 if eos_id is None else eos_id), cfg=cfg,
                                 n_slots=_bucket(n), greedy=greedy, top_k=top_k, use_top_p=use_top_p,
                                 return_logits=return_logits,
                                 cache_dtype=None if cache_dtype is None else jnp.dtype(cache_dtype).name,
                                 layout=layout)
            new_BN[idx] = np.asarray(out_BN)[:len(idx), :n]
            if return_logits:
                logits_BNV[idx] = np.asarray(lg)[:len(idx), :n]

    if kind.startswith("array"):
        dtype = np.asarray(prompt_tokens).dtype
        out = np.concatenate([np.stack(rows), new_BN], axis=1).astype(dtype)
        out, lg = (out[0], logits_BNV[0]) if kind == "array1" else (out, logits_BNV)
        return (out, lg) if return_logits else out
    outs, lgs = [], []
    for row, new, lg in zip(rows, new_BN, logits_BNV):
        stop = n if eos_id is None or eos_id not in new else int(np.argmax(new == eos_id)) + 1
        outs.append([int(x) for x in row] + [int(x) for x in new[:stop]])
        lgs.append(lg[:stop])
    outs, lgs = (outs[0], lgs[0]) if kind == "list" else (outs, lgs)
    return (outs, lgs) if return_logits else outs


class _CallableModule(types.ModuleType):
    """`gpt2_jax.generate` is both this module and its main function: importing the submodule
    rebinds the package attribute to the module, so the module itself calls `generate`."""

    def __call__(self, *args, **kwargs):
        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
