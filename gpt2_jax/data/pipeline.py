"""The training loop's one entry point: `make_train_data` (corpus -> cached tokens -> packed
windows -> per-process batches), and the tf.data wrapper that prefetches them."""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import importlib.util
import logging
import os
from typing import Iterator

import numpy as np

from gpt2_jax.data import shards
from gpt2_jax.data.packing import PackedDataset, local_batch_size
from gpt2_jax.data.sources import DataConfig
from gpt2_jax.data.windows import RandomWindows
from gpt2_jax.errors import DataError, log_once
from gpt2_jax.extras import require


def _tf():
    """Import TensorFlow for tf.data only, hiding accelerators so it never takes JAX's memory."""
    tf = require("tensorflow", extra="tf", feature="the tf.data training pipeline")
    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except (RuntimeError, ValueError):  # already initialised, or no such device type
        pass
    return tf


def as_tf_dataset(packed: PackedDataset, *, start_step: int, num_steps: int, global_batch_size: int,
                  seed: int, process_index: int = 0, process_count: int = 1):
    """tf.data.Dataset of {"inputs", "targets"}: int32[LB, T] equal to packed.batch_at(step) for
    step in [start_step, start_step + num_steps), in order, prefetched (AUTOTUNE)."""
    lb = local_batch_size(global_batch_size, process_count, process_index)
    if start_step < 0 or num_steps < 0:
        raise DataError(f"start_step={start_step} and num_steps={num_steps} must be >= 0.")
    tf = _tf()
    kwargs = dict(global_batch_size=global_batch_size, seed=seed, process_index=process_index,
                  process_count=process_count)

    def fetch(step):
        batch = packed.batch_at(int(step), **kwargs)
        return batch["inputs"], batch["targets"]

    def to_dict(step):
        inputs, targets = tf.numpy_function(fetch, [step], (tf.int32, tf.int32), stateful=False)
        shape = (lb, packed.seq_len)
        return {"inputs": tf.ensure_shape(inputs, shape), "targets": tf.ensure_shape(targets, shape)}

    ds = tf.data.Dataset.range(start_step, start_step + num_steps)
    ds = ds.map(to_dict, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _prefetch(fetch, start: int, end: int, depth: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """fetch(step) for steps [start, end), computed `depth` steps ahead by one background thread."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gpt2_jax_batches") as pool:
        pending = collections.deque(pool.submit(fetch, s) for s in range(start, min(end, start + depth)))
        for step in range(start + depth, end + depth):
            batch = pending.popleft().result()
            if step < end:
                pending.append(pool.submit(fetch, step))
            yield batch


@dataclasses.dataclass(frozen=True)
class TrainData:
    """Packed (or random-window) corpus bound to one process's batch geometry and seed; holds no
    iterator state."""

    packed: PackedDataset | RandomWindows
    global_batch_size: int
    seed: int
    process_index: int = 0
    process_count: int = 1

    @property
    def local_batch_size(self) -> int:
        return local_batch_size(self.global_batch_size, self.process_count, self.process_index)

    @property
    def seq_len(self) -> int:
        return self.packed.seq_len

    @property
    def steps_per_epoch(self) -> float:
        return self.packed.steps_per_epoch(self.global_batch_size)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.packed.seq_len

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        return self.packed.batch_at(step, global_batch_size=self.global_batch_size, seed=self.seed,
                                    process_index=self.process_index, process_count=self.process_count)

    def tf_dataset(self, start_step: int, num_steps: int):
        return as_tf_dataset(self.packed, start_step=start_step, num_steps=num_steps,
                             global_batch_size=self.global_batch_size, seed=self.seed,
                             process_index=self.process_index, process_count=self.process_count)

    def train_batches(self, start_step: int, end_step: int) -> Iterator[dict[str, np.ndarray]]:
        """Numpy batches for steps [start_step, end_step), prefetched by tf.data; where TensorFlow
        is not installed (the Colab TPU runtime, the [train] extra alone) by a thread, said once."""
        if importlib.util.find_spec("tensorflow") is None:
            log_once("TensorFlow is not installed: training batches are prefetched by a Python thread instead of "
                     "tf.data (the same batches; install 'gpt2-jax[tf]' for tf.data).", level=logging.INFO)
            kwargs = dict(global_batch_size=self.global_batch_size, seed=self.seed,
                          process_index=self.process_index, process_count=self.process_count)
            return _prefetch(lambda step: self.packed.batch_at(step, **kwargs), start_step, max(start_step, end_step))
        return self.tf_dataset(start_step, max(0, end_step - start_step)).as_numpy_iterator()

    def eval_batches(self, batch_size: int | None = None, max_batches: int | None = None):
        """Validation batches (with "weights"); batch_size defaults to the global batch size."""
        return self.packed.eval_batches(batch_size or self.global_batch_size, max_batches,
                                        process_index=self.process_index,
                                        process_count=self.process_count)


def make_train_data(cfg: DataConfig, tokenizer=None, *, seq_len: int, global_batch_size: int,
                    seed: int, process_index: int = 0, process_count: int = 1,
                    data_dir: str | os.PathLike | None = None,
                    workdir: str | os.PathLike | None = None) -> TrainData:
    """Read and tokenize (or load cached tokens for) cfg.source, cut windows of seq_len+1 (packed,
    or at random offsets: cfg.windows) and bind the batch geometry; tokenizer defaults to
    Tokenizer.load(cfg.tokenizer)."""
    local_batch_size(global_batch_size, process_count, process_index)  # fail before tokenizing
    if tokenizer is None:
        from gpt2_jax.tokenizer import Tokenizer
        tokenizer = Tokenizer.load(cfg.tokenizer)
    tokens = shards.load_token_shards(cfg, tokenizer, data_dir=data_dir, workdir=workdir)
    packed = (RandomWindows if cfg.windows == "random" else PackedDataset)(tokens, seq_len, cfg.val_fraction)
    return TrainData(packed, global_batch_size, seed, process_index, process_count)
