"""Multi-host plumbing of a training run: which rows of the global batch this process feeds, those
rows as one global jax.Array, and the preemption notice every process agrees on. Starting
jax.distributed (and its watchdog) is gpt2_jax.distributed: evals and sampling need it too."""
from __future__ import annotations

import logging
import signal
from typing import Any

import jax
import numpy as np
from etils import epath
from jax.sharding import NamedSharding

from gpt2_jax.errors import ConfigError

log = logging.getLogger(__name__)


def process_rows(batch_sharding: NamedSharding, global_batch: int) -> tuple[int, int]:
    """(index, count): this process feeds rows [index·n, (index+1)·n) of the global batch, n =
    global_batch / count. Processes that hold the same rows (batch replicated across hosts, e.g. a
    tensor axis spanning hosts) get the same index."""
    idx = batch_sharding.addressable_devices_indices_map((global_batch, 1))
    spans = sorted({(s[0].start or 0, global_batch if s[0].stop is None else s[0].stop) for s in idx.values()})
    start, stop = spans[0][0], max(e for _, e in spans)
    covered = np.zeros(global_batch, bool)
    for a, b in spans:
        covered[a:b] = True
    size = stop - start
    if not covered[start:stop].all() or global_batch % size or start % size:
        raise ConfigError(f"process {jax.process_index()} holds batch rows {spans}, not one aligned "
                          "contiguous block; order the mesh so each host's devices are adjacent on "
                          "the data axes.")
    return start // size, global_batch // size


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding, global_rows: int) -> dict[str, jax.Array]:
    """This process's rows -> global arrays sharded by `sharding` (no cross-host transfer)."""
    return {k: jax.make_array_from_process_local_data(sharding, v, (global_rows,) + v.shape[1:])
            for k, v in local.items()}


BATCHES_DIR = "batches"


def dump_batch(workdir: Any, step: int, batch: dict[str, jax.Array], *, primary: bool) -> None:
    """WORKDIR/batches/step_{step:06d}.npy: the global batch step `step` consumed as int32 token
    ids [batch, seq_len + 1] (inputs + the last target), so another framework can replay the run.
    Every process gathers the rows it does not hold (a collective: all call it); process 0 writes."""
    from jax.experimental import multihost_utils
    inputs, targets = (np.asarray(multihost_utils.process_allgather(batch[k], tiled=True))
                       for k in ("inputs", "targets"))
    if not primary:
        return
    out = epath.Path(workdir) / BATCHES_DIR
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"step_{step:06d}.npy").open("wb") as f:
        np.save(f, np.concatenate([inputs, targets[:, -1:]], axis=1).astype(np.int32))


class PreemptionWatch:
    """Notices SIGTERM (preemption): single process via a signal handler; multi-process through
    JAX's preemption sync point (jax.distributed catches SIGTERM in C++), so every host stops at
    the same step. Every process must call `reached(step)` at every step. No Python handler then:
    it would replace JAX's, and the sync point would never fire."""

    def __init__(self):
        self._flag = False
        self._previous: Any = None
        self._multi = jax.process_count() > 1
        if not self._multi:
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
            except ValueError:  # not the main thread (e.g. some notebook runners): no handler
                self._previous = None

    def _handle(self, signum, frame):
        log.warning("SIGTERM received: saving a checkpoint and stopping.")
        self._flag = True

    def reached(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils
            return bool(multihost_utils.reached_preemption_sync_point(step))
        return self._flag

    def close(self) -> None:
        if not self._multi and self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
