"""Multi-process start-up (jax.distributed) and the guard that keeps a pod job from hanging.

Left to itself JAX turns a fault on one process into a long silent hang on the others: a killed
process leaves them blocked in a collective (gloo and ICI collectives have no timeout) until the
coordination service notices the missing heartbeats (100 s by default) and SIGABRTs them; an
exception or sys.exit on one process sends it into the shutdown barrier, which waits 300 s for
peers that are blocked in a collective. `initialize` therefore passes shorter timeouts and, when
there are several processes, starts a watchdog thread: each process bumps a counter in the
coordination service's key-value store every second, and a peer that stops (or reports a failure
through `fail_fast`) makes the others print one line naming it and exit 1 at once. Only the sudden
death of process 0, which hosts the coordination service, cannot be caught: JAX itself aborts the
others within seconds ("Failed to send RPC to coordination service ... the leader task ... died").
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Any

from gpt2_jax.errors import ConfigError

HEARTBEAT_TIMEOUT = 30  # s of silence after which the watchdog declares a process dead (JAX's own abort: twice that)
SHUTDOWN_TIMEOUT = 60   # s process 0 waits at the shutdown barrier for the others' final work
_PREFIX = "gpt2_jax/watchdog/"
_watchdog: "_Watchdog | None" = None
_barriers = 0


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1, *,
               heartbeat_timeout: int = HEARTBEAT_TIMEOUT, shutdown_timeout: int = SHUTDOWN_TIMEOUT,
               cpu_collectives: str = "gloo") -> bool:
    """Start jax.distributed before anything touches the JAX backend, plus the watchdog when
    there are several processes: a process silent for `heartbeat_timeout` s is named and the others
    exit 1 (JAX's own unnamed abort comes at twice that, a safety net). Explicit flags win; on a
    multi-host Cloud TPU slice (TPU_WORKER_HOSTNAMES lists several hosts) JAX finds its peers
    itself. True if initialized."""
    if coordinator_address:
        if num_processes <= 0 or not 0 <= process_id < num_processes:
            raise ConfigError(f"coordinator address {coordinator_address} given: also pass the number of processes "
                              f"(> 0) and this process's id in [0, number) (got num_processes={num_processes}, "
                              f"process_id={process_id}).")
        where = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    elif num_processes > 1 or process_id >= 0:
        raise ConfigError(f"num_processes={num_processes}, process_id={process_id} given without a coordinator "
                          "address; also pass the coordinator address HOST:PORT of process 0.")
    elif "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        where = {}  # Cloud TPU: coordinator and ids come from the TPU metadata
    else:
        return False
    if heartbeat_timeout < 4 or shutdown_timeout < 1:
        raise ConfigError(f"heartbeat_timeout={heartbeat_timeout} s must be >= 4 and shutdown_timeout="
                          f"{shutdown_timeout} s >= 1; the defaults are {HEARTBEAT_TIMEOUT} and {SHUTDOWN_TIMEOUT}.")
    import jax
    from jax._src import distributed as jax_distributed  # its client has no public accessor (orbax reads it so too)

    state = jax_distributed.global_state
    if state.client is not None:  # already started (e.g. a notebook calling this twice)
        return True
    # only the CPU backend reads it: harmless on TPU/GPU, needed for CPU multi-process runs
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(**where, heartbeat_timeout_seconds=2 * heartbeat_timeout,
                               shutdown_timeout_seconds=shutdown_timeout)
    if state.num_processes > 1:
        _start_watchdog(state.client, state.process_id, state.num_processes, stale_after=heartbeat_timeout)
    return True


def fail_fast(code: int, reason: str) -> int:
    """After an error on this process: in a multi-process run, tell the peers (their watchdogs
    exit naming this process and `reason`) and exit with `code` now, since a normal exit would wait
    at the shutdown barrier for peers blocked in a collective. Otherwise return `code`."""
    if _watchdog is None:
        return code
    _watchdog.report_failure(reason)
    _flush()
    os._exit(code)


def sync(name: str, timeout: float = 3600) -> None:
    """Wait until every process got here (a coordination-service barrier, no device collective),
    e.g. before the first run of a fresh compilation or after process 0 alone wrote a file: on CPU
    gloo gives up on a collective whose peers arrive more than 30 s apart ("Gloo context
    initialization failed"), and compile times differ between processes."""
    global _barriers
    from jax._src import distributed as jax_distributed
    state = jax_distributed.global_state
    if state.client is None or state.num_processes <= 1:
        return
    _barriers += 1
    state.client.wait_at_barrier(f"{_PREFIX}{name}/{_barriers}", int(timeout * 1000))


def from_process_0(*values: float) -> tuple[float, ...]:
    """Process 0's `values` on every process, so all report the same number (a collective: every
    process must call it at the same point); the values themselves in a one-process run."""
    import jax
    if jax.process_count() == 1:
        return tuple(float(v) for v in values)
    import numpy as np
    from jax.experimental import multihost_utils
    out = multihost_utils.broadcast_one_to_all(np.asarray(values, np.float32))
    return tuple(float(v) for v in np.asarray(out))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to save
            pass


_RERUN = "Rerun the job on all hosts to resume from its newest checkpoint."


class _Watchdog:
    """Heartbeats over the coordination service's key-value store; exits this process when a peer
    stops beating or reports a failure."""

    def __init__(self, client: Any, me: int, n: int, stale_after: float, interval: float = 1.0):
        self.client, self.me, self.n = client, me, n
        self.stale_after, self.interval = stale_after, interval
        self.shutting_down = False
        self.kv: dict[str, str] = {}
        self.seen = {p: (None, time.monotonic()) for p in range(n) if p != me}  # last counter, since when
        self.thread = threading.Thread(target=self._run, name="gpt2_jax-watchdog", daemon=True)

    def publish(self, key: str, value: str) -> None:
        try:
            self.client.key_value_set(_PREFIX + key, value, allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the service may already be gone; we exit anyway
            pass

    def report_failure(self, reason: str) -> None:
        """Tell the peers this process failed. Process 0 then waits for their watchdogs to read it:
        its exit takes the coordination service down, and JAX would abort them with its own message."""
        self.publish(f"failed/{self.me}", reason[:300])
        if self.me == 0:
            time.sleep(3 * self.interval)

    def die(self, message: str) -> None:
        _flush()
        sys.stderr.write(f"FATAL (process {self.me} of {self.n}): {message}\n")
        _flush()
        os._exit(1)

    def finish(self) -> None:
        """At a normal exit: peers stop watching us; KV errors from now on are the shutdown's."""
        self.publish(f"done/{self.me}", "1")
        self.shutting_down = True

    def verdict(self, stale_after: float) -> str | None:
        """What is wrong with the peers, if anything: one that reported a failure, or one whose
        heartbeat has not changed for `stale_after` s."""
        now = time.monotonic()
        for p, (_, since) in self.seen.items():
            failed = self.kv.get(f"{_PREFIX}failed/{p}")
            if failed is not None:
                return f"process {p} failed ({failed.rstrip('.')}); see its log for the cause"
            if f"{_PREFIX}done/{p}" not in self.kv and now - since > stale_after:
                return (f"process {p} has not reported for {now - since:.0f} s: it died (killed, out of memory, "
                        "preempted) or its host is unreachable")
        return None

    def after_error(self, reason: str) -> None:
        """This process failed with `reason`: say whether a peer stopped first (a dead peer often
        surfaces here as a collective error, e.g. "Connection closed by peer"), tell the peers, exit 1."""
        # A peer killed just now is seen silent only once its last observed beat is 2.5 s old, and
        # that observation lags its beat by up to a poll (more under load): look for up to 8 s. A
        # live peer beats every second, so it is never that silent.
        cause = None
        for _ in range(8):
            time.sleep(self.interval)
            cause = self.verdict(stale_after=2.5 * self.interval)
            if cause is not None:
                break
        self.report_failure(reason)
        self.die(f"{cause}; this process then failed ({reason[:300]}). {_RERUN}" if cause else
                 f"this process failed ({reason[:300]}); its peers stop too.")

    def _run(self) -> None:
        beat = 0
        while True:
            time.sleep(self.interval)
            beat += 1
            try:
                self.client.key_value_set(f"{_PREFIX}alive/{self.me}", str(beat), allow_overwrite=True)
                self.kv = dict(self.client.key_value_dir_get(_PREFIX))
            except Exception as e:  # noqa: BLE001
                if self.shutting_down:
                    return
                first = (str(e).strip().splitlines() or [""])[0][:160]
                self.die(f"cannot reach the coordination service on process 0 ({type(e).__name__}: {first}): "
                         f"process 0 died or the network is down. {_RERUN}")
            now = time.monotonic()
            for p, (last, since) in self.seen.items():
                value = self.kv.get(f"{_PREFIX}alive/{p}")
                if value != last:
                    self.seen[p] = (value, now)
            cause = self.verdict(self.stale_after)
            if cause is not None:
                self.die(f"{cause}; stopping this process too. {_RERUN}")


def _start_watchdog(client: Any, me: int, n: int, *, stale_after: float) -> None:
    global _watchdog
    _watchdog = _Watchdog(client, me, n, stale_after)
    previous = sys.excepthook

    def excepthook(etype, value, tb):  # an uncaught error: traceback, then fail fast instead of the barrier
        previous(etype, value, tb)
        first = (str(value).strip().splitlines() or [""])[0]
        _watchdog.after_error(f"{etype.__name__}: {first}" if first else etype.__name__)

    sys.excepthook = excepthook
    # atexit runs handlers last-in first-out: this one runs before jax's shutdown barrier (registered
    # when jax was imported), so peers know we finished and our KV errors during shutdown are expected.
    atexit.register(_watchdog.finish)
    _watchdog.thread.start()
