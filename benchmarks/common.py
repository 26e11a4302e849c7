"""Timing and reporting helpers shared by the benchmark workers: median of repeats after warm-up,
peak host memory, and one JSON line per result so the orchestrator can parse a worker's stdout."""
from __future__ import annotations

import json
import resource
import statistics
import time
from typing import Callable

SMALL = dict(n_layer=6, n_embd=384, n_head=6, n_positions=256)  # the "small model"
RESULT_TAG = "BENCH_RESULT "


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_repeats(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeats` calls of `fn` (which must block until done), after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_repeats_cpu(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Like time_repeats, also returning this process's CPU seconds (all threads) per call: on a
    shared machine CPU time is what the process actually got, wall time includes waiting."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def emit(case: str, side: str, *, units: float, times: list[float], compile_s: float = 0.0,
         unit: str = "tokens/s", **extra) -> dict:
    """Print one result line: throughput = units / median(time)."""
    med = statistics.median(times)
    rec = dict(case=case, side=side, value=units / med, unit=unit, units=units, median_s=med,
               times=[round(t, 5) for t in times], compile_s=round(compile_s, 2),
               peak_rss_mb=round(peak_rss_mb()), **extra)
    print(RESULT_TAG + json.dumps(rec), flush=True)
    return rec
