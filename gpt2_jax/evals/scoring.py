"""The scoring core of every eval: batched, jit-compiled log-probabilities of chosen tokens.

A request is a token sequence `seq` and a count `n`: the model reads seq[:-1] and we score its
predictions of the last n tokens (the continuation) given the rest (the context). Requests with
the same context share it: one packed sequence holds the context once and then every
continuation's tokens, each continuation restarting its positions where the context ends and
attending to the context and to itself only (a block mask). So CBT's 10 candidates, WSC's two or a
multiple-choice question cost one context, not ten, and give the same numbers as scoring each
request alone. Unrelated requests are packed side by side into fixed-length rows (one shape per
length bucket, sorted longest first, so padding stays small); rows without packing run the
causal kernel instead of a mask.

The LM head runs only at scored positions (vocab-major, a few rows at a time), so a one-token
LAMBADA target does not pay for a [T, 50257] logit matrix. Log-probabilities are fp32; matmuls run
in the config's compute dtype. Every batch is a global array over the evaluator's `Layout`
(default: all devices of all processes data-parallel): every process builds the same batches,
feeds its devices' rows and reads the replicated results, so a pod evaluates in SPMD.
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError
from gpt2_jax.loss import head_scores
from gpt2_jax.model import forward, param_shardings
from gpt2_jax.sharding import Layout, data_parallel

Request = tuple[Sequence[int], int]  # (seq, n): score the last n tokens of seq given the rest

# Row lengths: ~1.5x steps while short, then every 64 tokens up to 1024 (CBT's ~450-700-token
# questions waste <= ~12% instead of up to 33%; compiles are per bucket and cheap next to the run).
_ROW_BUCKETS = (32, 48, 64, 96, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024,
                1280, 1536, 2048, 3072, 4096)


@dataclasses.dataclass(frozen=True)
class Scored:
    """Scores of one request's last n tokens: log-probs (nats), greedy flags, and greedy flags
    under the `allowed` vocabulary mask (equal to `greedy` when no mask was given)."""
    logp: np.ndarray
    greedy: np.ndarray
    greedy_allowed: np.ndarray


@dataclasses.dataclass
class Stats:
    """Work done by a scorer: scored tokens, tokens through the model (real and with padding)."""
    scored_tokens: int = 0
    forward_tokens: int = 0
    padded_tokens: int = 0
    requests: int = 0
    seconds: float = 0.0

    def minus(self, other: "Stats") -> "Stats":
        return Stats(*(getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self)))

    def metrics(self) -> dict[str, float]:
        """Throughput figures for a task's results."""
        s = max(self.seconds, 1e-9)
        return {"scored_tokens": self.scored_tokens, "forward_tokens": self.forward_tokens,
                "padding_fraction": round(1 - self.forward_tokens / self.padded_tokens, 4) if self.padded_tokens else 0.0,
                "scored_tokens_per_sec": round(self.scored_tokens / s, 1),
                "forward_tokens_per_sec": round(self.forward_tokens / s, 1)}


@dataclasses.dataclass
class _Unit:
    """One context and the continuations scored against it: the packed token run, each token's
    position and candidate id (0 = the shared context), and where each target is read."""
    tokens: list[int]
    positions: list[int]
    cands: list[int]
    targets: list[tuple[int, int, int, int]]  # (offset in unit, target token, request, index in request)


def _units(requests: Sequence[Request], share_prefix: bool, cap: int) -> list[_Unit]:
    """Group requests by context (when `share_prefix`) into units of at most `cap` tokens."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (seq, n) in enumerate(requests):
        key = tuple(seq[:len(seq) - n]) if share_prefix else (i,)
        groups.setdefault(key, []).append(i)
    units = []
    for members in groups.values():
        seq0, n0 = requests[members[0]]
        ctx = list(seq0[:len(seq0) - n0])
        unit = None
        for i in members:
            seq, n = requests[i]
            cont = list(seq[len(seq) - n:])
            if unit is None or len(unit.tokens) + n - 1 > cap:
                unit = _Unit(list(ctx), list(range(len(ctx))), [0] * len(ctx), [])
                units.append(unit)
            cand = max(unit.cands) + 1
            prev = len(ctx) - 1  # the first continuation token is predicted from the context's end
            for j, target in enumerate(cont):
                unit.targets.append((prev, target, i, j))
                if j < n - 1:
                    unit.tokens.append(target)
                    unit.positions.append(len(ctx) + j)
                    unit.cands.append(cand)
                    prev = len(unit.tokens) - 1
    return units


def _bucket(n: int, buckets: Sequence[int]) -> int:
    return buckets[bisect.bisect_left(buckets, n)] if n <= buckets[-1] else n


def _check_requests(requests: Sequence[Request], cfg: GPT2Config) -> None:
    max_len = cfg.n_positions
    for i, (seq, n) in enumerate(requests):
        if not 1 <= n <= len(seq) - 1 or len(seq) - 1 > max_len:
            raise InputError(f"request {i}: {len(seq)} tokens scoring the last {n}; need 1 <= n < "
                             f"len(seq) <= n_positions + 1 = {max_len + 1}. Truncate the context first.")
    _check_ids([seq for seq, _ in requests], cfg.vocab_size)


def _check_ids(seqs: Sequence[Sequence[int]], vocab_size: int) -> None:
    """Token ids outside the embedding table would be clamped silently by the gather: refuse them."""
    hi = max((max(s) for s in seqs if len(s)), default=0)
    lo = min((min(s) for s in seqs if len(s)), default=0)
    if hi >= vocab_size or lo < 0:
        raise InputError(f"token id {hi if hi >= vocab_size else lo} is outside the model's vocabulary "
                         f"[0, {vocab_size}); evaluate with the tokenizer the model was trained with.")


def _score_rows(params, tokens_BR, positions_BR, units_BR, cands_BR, tpos_BK, ttok_BK, allowed_V, *,
                cfg: GPT2Config, chunk: int, masked: bool, layout: Layout):
    """Final hidden states of packed rows, then log p / greedy flags at the K target slots."""
    mask_BRS = None
    if masked:  # same unit, causal, and the shared context or the same continuation
        r = tokens_BR.shape[1]
        causal_RS = jnp.tril(jnp.ones((r, r), bool))[None]
        same_unit = units_BR[:, :, None] == units_BR[:, None, :]
        visible = (cands_BR[:, None, :] == 0) | (cands_BR[:, None, :] == cands_BR[:, :, None])
        mask_BRS = causal_RS & same_unit & visible
    h_BRD = forward(params, tokens_BR, cfg, positions_BT=positions_BR, mask_BTS=mask_BRS, return_hidden=True,
                    layout=layout)
    h_BKD = jnp.take_along_axis(h_BRD, tpos_BK[:, :, None], axis=1)
    b, k, d = h_BKD.shape
    h_CbD = h_BKD.reshape(b, k // chunk, chunk, d).transpose(1, 0, 2, 3)
    t_Cb = ttok_BK.reshape(b, k // chunk, chunk).transpose(1, 0, 2)

    def head(args):
        h, t = args
        out = head_scores(h.reshape(-1, d), params["wte"], t.reshape(-1), cfg, allowed_V)
        return tuple(x.reshape(t.shape) for x in out)

    outs = jax.lax.map(head, (h_CbD, t_Cb))
    return tuple(layout.constrain(x.transpose(1, 0, 2).reshape(b, k), (None, None)) for x in outs)


class Scorer:
    """Scores requests with one model: params placed on the layout once, one compilation per
    (row length, target count) bucket reused across calls. `stats` accumulates the work done."""

    def __init__(self, params: Any, cfg: GPT2Config, batch_size: int = 8, head_rows: int | None = None,
                 layout: Layout | None = None, share_prefix: bool = True, progress: bool = False):
        self.layout = layout or data_parallel()
        self.cfg = cfg
        ways = self.layout.data_parallel_size
        self.batch_size = max(ways, math.ceil(batch_size / ways) * ways)
        # LM-head rows per step: [V, rows] logits stay cache-sized on CPU (measured ~2.5x faster at
        # 64 rows than at 1024); accelerators want big matmuls.
        cpu = self.layout.mesh.devices.flat[0].platform == "cpu"
        self.head_rows = head_rows or (64 if cpu else 8192)
        self.share_prefix = share_prefix
        self.progress = progress
        self.params = self.layout.put(params, param_shardings(cfg, self.layout))
        self.stats = Stats()
        self._fns: dict[tuple[int, bool, bool], Any] = {}

    @property
    def mesh(self):
        return self.layout.mesh

    def _fn(self, chunk: int, masked: bool, with_allowed: bool):
        key = (chunk, masked, with_allowed)
        if key not in self._fns:
            self._fns[key] = jax.jit(functools.partial(_score_rows, cfg=self.cfg, chunk=chunk, masked=masked,
                                                       layout=self.layout))
        return self._fns[key]

    def _rows(self, n: int) -> int:
        """Rows of a batch holding n packed rows, rounded up to the data-parallel ways only: batches
        come longest first and all but the last are full, so a short last batch costs one more
        compile instead of running empty rows up to batch_size."""
        ways = self.layout.data_parallel_size
        return min(self.batch_size, math.ceil(n / ways) * ways)

    def _batches(self, units: list[_Unit]):
        """Rows of packed units, longest first: each batch's row length is the bucket of its
        longest unit; units fill the batch's rows first-fit."""
        order = sorted(range(len(units)), key=lambda u: -len(units[u].tokens))
        bs, pos = self.batch_size, 0
        while pos < len(order):
            r = _bucket(len(units[order[pos]].tokens), _ROW_BUCKETS)
            rows: list[list[int]] = []
            free: list[int] = []
            while pos < len(order):
                u = order[pos]
                need = len(units[u].tokens)
                slot = next((j for j, f in enumerate(free) if f >= need), None)
                if slot is None:
                    if len(rows) == bs:
                        break
                    rows.append([])
                    free.append(r)
                    slot = len(rows) - 1
                rows[slot].append(u)
                free[slot] -= need
                pos += 1
            yield r, rows

    def score(self, requests: Sequence[Request], allowed_V: np.ndarray | None = None,
              desc: str = "scoring") -> list[Scored]:
        """Score each (seq, n): log p(seq[i] | seq[:i]) for the last n positions i of seq."""
        _check_requests(requests, self.cfg)
        t0 = time.perf_counter()
        units = _units(requests, self.share_prefix, cap=2 * self.cfg.n_positions)
        logp = [np.zeros(n) for _, n in requests]
        greedy = [np.zeros(n, bool) for _, n in requests]
        greedy_allowed = [np.zeros(n, bool) for _, n in requests]
        allowed = None if allowed_V is None else jnp.asarray(allowed_V, bool)
        bar = _progress(desc, sum(len(u.tokens) for u in units), self.progress)
        for r, rows in self._batches(units):
            bs = self._rows(len(rows))
            n_targets = max(sum(len(units[u].targets) for u in row) for row in rows)
            k = 1 << (n_targets - 1).bit_length()
            chunk = min(k, max(1, self.head_rows // bs))
            k = math.ceil(k / chunk) * chunk
            tokens, positions = np.zeros((bs, r), np.int32), np.zeros((bs, r), np.int32)
            unit_ids, cands = np.full((bs, r), -1, np.int32), np.zeros((bs, r), np.int32)
            tpos, ttok = np.zeros((bs, k), np.int32), np.zeros((bs, k), np.int32)
            where = []
            for b, row in enumerate(rows):
                start, slot = 0, 0
                for j, u in enumerate(row):
                    unit = units[u]
                    end = start + len(unit.tokens)
                    tokens[b, start:end], positions[b, start:end] = unit.tokens, unit.positions
                    unit_ids[b, start:end], cands[b, start:end] = j, unit.cands
                    for off, target, i, idx in unit.targets:
                        tpos[b, slot], ttok[b, slot] = start + off, target
                        where.append((b, slot, i, idx))
                        slot += 1
                    start = end
            masked = any(len(row) > 1 or max(units[row[0]].cands) > 1 for row in rows)
            put = self.layout.put_batch
            outs = self._fn(chunk, masked, allowed is not None)(
                self.params, put(tokens), put(positions), put(unit_ids), put(cands), put(tpos), put(ttok), allowed)
            lp, gr, ga = (np.asarray(x) for x in outs)
            for b, slot, i, idx in where:
                logp[i][idx], greedy[i][idx], greedy_allowed[i][idx] = lp[b, slot], gr[b, slot], ga[b, slot]
            real = sum(len(units[u].tokens) for row in rows for u in row)
            self.stats.forward_tokens += real
            self.stats.padded_tokens += bs * r
            bar.update(real)
        bar.close()
        self.stats.scored_tokens += sum(n for _, n in requests)
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - t0
        return [Scored(lp.astype(np.float64), g, ga) for lp, g, ga in zip(logp, greedy, greedy_allowed)]

    def greedy(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
               eos_id: int | None = None) -> list[list[int]]:
        """Greedy continuations (`max_new_tokens` each; after `eos_id` a row repeats it) of prompts
        left-truncated to n_positions - max_new_tokens tokens, by `generate`'s decoder."""
        from gpt2_jax.generate import generate
        keep = self.cfg.n_positions - max_new_tokens
        if max_new_tokens < 1 or keep < 1:
            raise InputError(f"max_new_tokens={max_new_tokens} must be in [1, n_positions={self.cfg.n_positions}).")
        rows = [list(p)[-keep:] for p in prompts]
        if any(not r for r in rows):
            raise InputError("an empty prompt cannot be continued; pass at least one token.")
        _check_ids(rows, self.cfg.vocab_size)
        t0 = time.perf_counter()
        outs = generate(self.params, self.cfg, rows, max_new_tokens=max_new_tokens, eos_id=eos_id,
                        layout=self.layout, batch_size=self.batch_size)
        self.stats.forward_tokens += sum(len(o) for o in outs)
        self.stats.seconds += time.perf_counter() - t0
        pad = [] if eos_id is None else [eos_id]
        return [o[len(r):] + pad * (max_new_tokens - len(o) + len(r)) for r, o in zip(rows, outs)]


def _progress(desc: str, total: int, enabled: bool):
    """A tqdm bar over tokens on process 0 (a no-op elsewhere or when disabled)."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="tok", unit_scale=True, leave=False,
                disable=not enabled or jax.process_index() != 0)


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
