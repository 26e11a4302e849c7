"""gpt2_jax throughput against sequence length and batch size (124M, fp32, this CPU):

    python -m benchmarks.scaling [--what forward train] [--seqs 128 256 512 1024] [--batches 1 2 4 8]

Sequence sweep at batch 1, batch sweep at sequence 256; median of 3 after a warm-up, one process.
Prints a markdown table with tokens/s and MFU against the GEMM peak measured in the same process.
"""
from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import jax_side
from benchmarks.common import time_repeats
from gpt2_jax import model


def gemm_peak(sizes=(1024, 2048)) -> float:
    """Best fp32 GEMM GFLOP/s over n^3 for n in sizes (as benchmarks.run's gemm_peak)."""
    best = 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n))
        mm = jax.jit(lambda a: a @ a)
        best = max(best, 2 * n ** 3 / min(time_repeats(lambda: mm(a).block_until_ready(), 10, warmup=2)) / 1e9)
    return best


def one(what: str, batch: int, seq: int, cfg, params_or_step, repeats: int = 3) -> float:
    x = jnp.asarray(np.random.default_rng(0).integers(0, 50257, (batch, seq + 1)), jnp.int32)
    if what == "forward":
        fwd = jax.jit(lambda p, x: model.forward(p, x, cfg))
        params = params_or_step
        return statistics.median(time_repeats(lambda: fwd(params, x[:, :-1]).block_until_ready(), repeats))
    step, state = params_or_step
    batch_d = {"inputs": x[:, :-1], "targets": x[:, 1:]}
    holder = [state]

    def run():
        holder[0], m = step(holder[0], batch_d)
        m["loss"].block_until_ready()

    t = statistics.median(time_repeats(run, repeats))
    params_or_step[1] = holder[0]
    return t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", nargs="+", default=["forward", "train"])
    ap.add_argument("--size", default="124m")
    ap.add_argument("--seqs", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--batch_seq", type=int, default=256)
    args = ap.parse_args(argv)
    cfg = jax_side.config(args.size)
    peak = gemm_peak()
    print(f"GEMM peak {peak:.0f} GFLOP/s (best fp32 n^3, n=1024/2048) — {args.size}\n")
    print("| what | batch | seq | tokens/s | step s | MFU |")
    print("|---|---:|---:|---:|---:|---:|")
    for what in args.what:
        state = model.init_params(cfg, jax.random.key(0)) if what == "forward" else list(jax_side.make_step(cfg))
        points = [(1, s) for s in args.seqs] + [(b, args.batch_seq) for b in args.batches if b != 1]
        for b, s in points:
            secs = one(what, b, s, cfg, state)
            tps = b * s / secs
            mfu = tps * cfg.flops_per_token(s, training=what == "train") / (peak * 1e9)
            print(f"| {what} | {b} | {s} | {tps:,.0f} | {secs:.3f} | {mfu:.0%} |", flush=True)


if __name__ == "__main__":
    main()
