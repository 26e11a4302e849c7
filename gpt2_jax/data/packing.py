"""Pack a token stream into windows of seq_len+1 and serve batches as a pure function of
(seed, step, process_index, process_count), so resuming needs only the step number."""
from __future__ import annotations

import threading
from typing import Iterator, Sequence

import numpy as np

from gpt2_jax.errors import DataError, InputError


def local_batch_size(global_batch_size: int, process_count: int = 1, process_index: int = 0) -> int:
    """Rows each process feeds: global_batch_size / process_count (must divide evenly)."""
    if global_batch_size <= 0:
        raise DataError(f"global_batch_size={global_batch_size} must be positive.")
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise DataError(f"process_index={process_index} must be in [0, process_count={process_count}).")
    if global_batch_size % process_count:
        raise DataError(f"global_batch_size={global_batch_size} is not divisible by process_count="
                        f"{process_count}; use a multiple of {process_count}.")
    return global_batch_size // process_count


def split_windows(num_windows: int, val_fraction: float) -> int:
    """Number of validation windows: floor(fraction * windows), at least 1 when fraction > 0."""
    return 0 if val_fraction <= 0 else max(1, int(num_windows * val_fraction))


def checked_shards(tokens: np.ndarray | Sequence[np.ndarray], seq_len: int, val_fraction: float) -> list[np.ndarray]:
    """The 1-D integer token shards, with seq_len and val_fraction checked (one error naming each)."""
    shards = [tokens] if isinstance(tokens, np.ndarray) else list(tokens)
    for i, s in enumerate(shards):
        if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
            raise DataError(f"token shard {i} must be a 1-D integer array, got {s.dtype}{list(s.shape)}.")
    if seq_len <= 0:
        raise InputError(f"seq_len={seq_len} must be positive.")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must be in [0, 1).")
    return shards


class PackedDataset:
    """Non-overlapping windows of seq_len+1 tokens over one or more 1-D token shards.

    Windows never straddle shards (a shard's tail shorter than a window is dropped). The LAST
    num_val_windows windows are validation: a contiguous tail leaks at most one document across
    the split (random windows would put pieces of the same document on both sides), and it does
    not depend on the seed, so every run and resume evaluates the same text."""

    def __init__(self, tokens: np.ndarray | Sequence[np.ndarray], seq_len: int,
                 val_fraction: float = 0.05):
        shards = checked_shards(tokens, seq_len, val_fraction)
        self.seq_len, self.window = seq_len, seq_len + 1
        counts = [len(s) // self.window for s in shards]
        self._views = [s[: c * self.window].reshape(c, self.window) for s, c in zip(shards, counts)]
        self._starts = np.cumsum([0] + counts)
        self.num_tokens = int(sum(len(s) for s in shards))
        total = int(self._starts[-1])
        self.num_val_windows = split_windows(total, val_fraction)
        self.num_train_windows = total - self.num_val_windows
        if self.num_train_windows < 1:
            need = next(n for n in range(1, 1 << 30) if n - split_windows(n, val_fraction) >= 1)
            where = " in one shard" if len(shards) > 1 else ""
            raise DataError(
                f"corpus too small: {self.num_tokens} tokens make {total} windows of seq_len+1="
                f"{self.window} tokens, none left for training after {self.num_val_windows} "
                f"validation window(s) (val_fraction={val_fraction}); need at least {need} windows = "
                f"{need * self.window} tokens{where}. Use a larger corpus, a smaller seq_len or a "
                "smaller val_fraction.")
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ windows
    def windows(self, idx) -> np.ndarray:
        """int32[len(idx), seq_len+1]: windows by global index (train: [0, N), val after)."""
        idx = np.asarray(idx, np.int64)
        out = np.empty((idx.size, self.window), np.int32)
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        for s in np.unique(shard_of):
            sel = shard_of == s
            out[sel] = self._views[s][idx[sel] - self._starts[s]]
        return out

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        """Permutation of the train windows for one epoch: default_rng([seed, epoch])."""
        key = (int(seed), int(epoch))
        with self._lock:
            perm = self._perms.get(key)
        if perm is None:
            perm = np.random.default_rng([key[0], key[1]]).permutation(self.num_train_windows)
            with self._lock:
                if len(self._perms) >= 4:
                    self._perms.pop(next(iter(self._perms)))
                self._perms[key] = perm
        return perm

    def steps_per_epoch(self, global_batch_size: int) -> float:
        return self.num_train_windows / global_batch_size

    # ------------------------------------------------------------------ batches
    def batch_at(self, step: int, *, global_batch_size: int, seed: int, process_index: int = 0,
                 process_count: int = 1) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step`: positions step*GB + p*LB + [0, LB) of the
        concatenated per-epoch orders. Returns {"inputs", "targets"}: int32[LB, seq_len]."""
        lb = local_batch_size(global_batch_size, process_count, process_index)
        if step < 0:
            raise InputError(f"step={step} must be >= 0.")
        pos = step * global_batch_size + process_index * lb + np.arange(lb, dtype=np.int64)
        epoch, within = np.divmod(pos, self.num_train_windows)
        idx = np.empty(lb, np.int64)
        for e in np.unique(epoch):
            sel = epoch == e
            idx[sel] = self.epoch_order(seed, int(e))[within[sel]]
        return _split(self.windows(idx))

    def eval_batches(self, batch_size: int, max_batches: int | None = None, *, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Validation windows in stored order, in global batches of `batch_size` (this process's
        rows). The last batch is padded by repeating the last window; "weights" (float32[LB, T])
        is 0 on padding rows, so a weighted mean counts every validation token exactly once."""
        lb = local_batch_size(batch_size, process_count, process_index)
        n = self.num_val_windows
        num_batches = -(-n // batch_size)
        if max_batches is not None:
            num_batches = min(num_batches, max_batches)
        for b in range(num_batches):
            pos = b * batch_size + process_index * lb + np.arange(lb, dtype=np.int64)
            batch = _split(self.windows(self.num_train_windows + np.minimum(pos, n - 1)))
            batch["weights"] = np.broadcast_to((pos < n).astype(np.float32)[:, None],
                                               (lb, self.seq_len)).copy()
            yield batch


def _split(rows: np.ndarray) -> dict[str, np.ndarray]:
    """A window of T+1 tokens gives inputs [0, T) and next-token targets [1, T+1)."""
    return {"inputs": np.ascontiguousarray(rows[:, :-1]), "targets": np.ascontiguousarray(rows[:, 1:])}
