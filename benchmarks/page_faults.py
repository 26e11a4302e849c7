"""What `gpt2_jax.host.keep_freed_memory` does to an XLA:CPU step, with and without it:

    python -m benchmarks.page_faults [--steps 8]

The step is a [1024, 64] x [64, 50000] matmul + logsumexp: its temporary is the size of the 124M
model's logits for one 1024-token row (205 MB). Each setting runs in its own process (the
allocator is process-wide); the two alternate for `--rounds` rounds. Prints, per setting, the
median ms per step and the minor page faults per step (min / median / max over the steps).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = """
import json, resource, sys, time
from gpt2_jax import host
applied = host.keep_freed_memory() if sys.argv[1] == "keep" else False
import jax, jax.numpy as jnp
step = jax.jit(lambda x, w: jax.nn.logsumexp(x @ w, axis=-1))
x, w = jnp.ones((1024, 64)), jnp.ones((64, 50_000))
step(x, w).block_until_ready()
ms, faults = [], []
for _ in range(int(sys.argv[2])):
    f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    step(x, w).block_until_ready()
    ms.append(1e3 * (time.perf_counter() - t0))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps(dict(applied=applied, ms=ms, faults=faults)))
"""


def run_once(mode: str, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GPT2_JAX_MALLOC"}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(steps)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per process, after one warm-up")
    ap.add_argument("--rounds", type=int, default=2, help="processes per setting, alternating")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {"keep": [], "default": []}
    for r in range(args.rounds):
        for mode in (("keep", "default") if r % 2 == 0 else ("default", "keep")):
            runs[mode].append(run_once(mode, args.steps))
            print(f"round {r + 1}/{args.rounds}: {mode} done", file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"| malloc | applied | ms/step (median) | faults/step min / median / max |  (load {load:.1f})")
    print("|---|---|---|---|")
    for mode, recs in runs.items():
        ms = [m for rec in recs for m in rec["ms"]]
        faults = [f for rec in recs for f in rec["faults"]]
        print(f"| {mode} | {recs[0]['applied']} | {statistics.median(ms):.1f} | "
              f"{min(faults)} / {int(statistics.median(faults))} / {max(faults)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
