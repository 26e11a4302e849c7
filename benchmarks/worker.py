"""One measurement in a fresh process: `python -m benchmarks.worker SIDE CASE key=value ...`.
SIDE is jax or torch; values are parsed as Python literals when they can be."""
from __future__ import annotations

import ast
import os
import sys


def _parse(kv: str):
    k, v = kv.split("=", 1)
    try:
        return k, ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return k, v


def main(argv: list[str]) -> None:
    side, case, *rest = argv
    kwargs = dict(_parse(a) for a in rest)
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    if threads < (os.cpu_count() or 1):  # XLA and ATen size their pools from the affinity mask
        os.sched_setaffinity(0, range(threads))
    if side == "torch":
        import torch
        torch.set_num_threads(threads)
        from benchmarks import torch_ref as mod
    else:
        from benchmarks import jax_side as mod
    mod.CASES[case](**kwargs)


if __name__ == "__main__":
    main(sys.argv[1:])
