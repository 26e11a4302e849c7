"""Multi-host plumbing: `jax.distributed` start-up, which rows of the global batch this process
feeds, and turning those rows into one global jax.Array."""
from __future__ import annotations

import logging
import os
import signal
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from gpt2_jax.errors import ConfigError

log = logging.getLogger(__name__)


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               *, cpu_collectives: str = "gloo") -> bool:
    """Start jax.distributed before any other JAX call. Explicit flags win; on a multi-host Cloud
    TPU slice (TPU_WORKER_HOSTNAMES lists several hosts) the plain auto-detecting call is used.
    On CPU, cross-process collectives go through `cpu_collectives` (gloo). True if initialized."""
    if coordinator_address:
        if num_processes <= 0 or not 0 <= process_id < num_processes:
            raise ConfigError(f"--coordinator_address={coordinator_address} needs --num_processes > 0 and "
                              f"0 <= --process_id < num_processes (got {num_processes}, {process_id}).")
        # only affects the CPU backend: harmless on TPU/GPU, needed for CPU multi-process runs
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
        return True
    if num_processes > 1 or process_id >= 0:
        raise ConfigError("--num_processes/--process_id need --coordinator_address=HOST:PORT of process 0.")
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()  # Cloud TPU: coordinator and ids come from the TPU metadata
        return True
    return False


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


class PreemptionWatch:
    """Notices SIGTERM (preemption): single process via a signal handler; multi-process through
    JAX's preemption sync point, so every host stops at the same step."""

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
