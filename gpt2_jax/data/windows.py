"""nanoGPT's batches (`data.windows="random"`): each row a window of seq_len+1 tokens at a random
offset of the training split, as train.py's get_batch (torch.randint(len(data) - block_size)).
The offsets of global batch `step` are drawn from default_rng([seed, TAG, step]), so a batch is
a pure function of (seed, step), whatever the process count, and a resumed run sees exactly the
batches the uninterrupted one would. The split is nanoGPT's too: the first 1 - val_fraction of the
token stream trains, the rest validates (val_fraction=0.1: prepare.py's 90/10)."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from gpt2_jax.data.packing import _split, checked_shards, local_batch_size
from gpt2_jax.errors import DataError, InputError

_TRAIN_TAG, _EVAL_TAG = 0x7261_6E64, 0x6576_616C  # "rand", "eval": streams apart from PackedDataset's


class RandomWindows:
    """Windows at random offsets of one token stream (the shards concatenated, in order); the same
    interface as PackedDataset, so TrainData and the loop take either."""

    def __init__(self, tokens: np.ndarray | Sequence[np.ndarray], seq_len: int, val_fraction: float = 0.1):
        shards = checked_shards(tokens, seq_len, val_fraction)
        self.seq_len, self.window = seq_len, seq_len + 1
        self._shards = [s for s in shards if len(s)]
        self._starts = np.cumsum([0] + [len(s) for s in self._shards])
        n = self.num_tokens = int(self._starts[-1])
        self.num_train_tokens = int(n * (1 - val_fraction))  # prepare.py: train_data = data[:int(n*0.9)]
        self.num_val_tokens = n - self.num_train_tokens
        for split, count in (("train", self.num_train_tokens), ("validation", self.num_val_tokens)):
            if count <= seq_len and (split == "train" or val_fraction > 0):
                raise DataError(
                    f"corpus too small: the {split} split (val_fraction={val_fraction}) of {n} tokens has {count} "
                    f"tokens, but a random window needs seq_len+1={self.window}. Use a larger corpus, a smaller "
                    "seq_len or another val_fraction.")
        self.num_train_windows = self.num_train_tokens - seq_len  # distinct offsets
        self.num_val_windows = max(self.num_val_tokens - seq_len, 0)

    def steps_per_epoch(self, global_batch_size: int) -> float:
        """Steps whose batches hold as many tokens as the training split (windows overlap at random)."""
        return self.num_train_tokens / (global_batch_size * self.seq_len)

    def windows(self, starts) -> np.ndarray:
        """int32[len(starts), seq_len+1]: the stream's tokens [start, start + seq_len + 1) per row."""
        starts = np.asarray(starts, np.int64)
        out = np.empty((starts.size, self.window), np.int32)
        for r, start in enumerate(starts.tolist()):
            pos, filled = start, 0
            while filled < self.window:  # a window may straddle shards of the stream
                s = int(np.searchsorted(self._starts, pos, side="right")) - 1
                piece = self._shards[s][pos - self._starts[s]: pos - self._starts[s] + self.window - filled]
                out[r, filled: filled + len(piece)] = piece
                filled, pos = filled + len(piece), pos + len(piece)
        return out

    def offsets_at(self, step: int, global_batch_size: int, seed: int) -> np.ndarray:
        """The window starts of global batch `step`: int64[global_batch_size] in [0, num_train_windows)."""
        if step < 0:
            raise InputError(f"step={step} must be >= 0.")
        rng = np.random.default_rng([int(seed), _TRAIN_TAG, int(step)])
        return rng.integers(0, self.num_train_windows, size=global_batch_size, dtype=np.int64)

    def batch_at(self, step: int, *, global_batch_size: int, seed: int, process_index: int = 0,
                 process_count: int = 1) -> dict[str, np.ndarray]:
        """This process's rows [p*LB, (p+1)*LB) of global batch `step`: {"inputs", "targets"}: int32[LB, T]."""
        lb = local_batch_size(global_batch_size, process_count, process_index)
        starts = self.offsets_at(step, global_batch_size, seed)[process_index * lb:(process_index + 1) * lb]
        return _split(self.windows(starts))

    def eval_batches(self, batch_size: int, max_batches: int | None = None, *, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Validation batches with "weights". With max_batches, nanoGPT's estimate_loss: that many
        batches at random offsets of the validation split, the same ones at every eval (drawn from
        default_rng([TAG, b]), not the seed, so every run evaluates the same text); with None, the
        split cut into consecutive windows (every token once; padding rows weigh 0)."""
        lb = local_batch_size(batch_size, process_count, process_index)
        if not self.num_val_tokens:
            return
        rows = slice(process_index * lb, (process_index + 1) * lb)
        if max_batches is not None:
            for b in range(max_batches):
                starts = np.random.default_rng([_EVAL_TAG, b]).integers(0, self.num_val_windows, size=batch_size)
                batch = _split(self.windows(self.num_train_tokens + starts[rows]))
                batch["weights"] = np.ones((lb, self.seq_len), np.float32)
                yield batch
            return
        n = self.num_val_tokens // self.window
        for b in range(-(-n // batch_size)):
            pos = b * batch_size + np.arange(batch_size, dtype=np.int64)[rows]
            batch = _split(self.windows(self.num_train_tokens + np.minimum(pos, n - 1) * self.window))
            batch["weights"] = np.broadcast_to((pos < n).astype(np.float32)[:, None], (lb, self.seq_len)).copy()
            yield batch
