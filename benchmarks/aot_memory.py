"""Per-device memory of the real train step for the GPT-2 family on simulated meshes, from XLA's
AOT compile (nothing is allocated: inputs are ShapeDtypeStructs carrying their shardings).

    python -m benchmarks.aot_memory [--devices 8 64] [--models gpt2 gpt2-medium gpt2-large gpt2-xl]
                                    [--remat none full] [--loss_chunk 0 256]

Each device count runs in its own process (XLA_FLAGS=--xla_force_host_platform_device_count=N).
Strategies: DP (data=N), FSDP (fsdp=N), FSDP+TP (fsdp=N/4, tensor=4); one 1024-token sequence per
device; remat none and full; GPT2Config.loss_chunk 0 (whole logits) unless --loss_chunk lists
others. Prints a markdown table (GB per device).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

STRATEGIES = {"DP": lambda n: dict(data=n, fsdp=1, tensor=1),
              "FSDP": lambda n: dict(data=1, fsdp=n, tensor=1),
              "FSDP+TP4": lambda n: dict(data=1, fsdp=n // 4, tensor=4)}


def measure(n_devices: int, models: list[str], remats: list[str], seq: int, loss_chunks: list[int]) -> None:
    """In a process with `n_devices` host devices: compile every (model, strategy, remat)."""
    import jax
    import jax.numpy as jnp

    from gpt2_jax import sharding
    from gpt2_jax.config import GPT2Config
    from gpt2_jax.train import optimizer as opt_lib, step as step_lib

    assert len(jax.devices()) == n_devices, jax.devices()
    ocfg = opt_lib.OptimizerConfig(warmup_steps=10)
    opt = opt_lib.make_optimizer(ocfg, total_steps=100)
    sched = opt_lib.learning_rate_schedule(ocfg, 100)
    for name in models:
        for remat, loss_chunk in ((r, c) for r in remats for c in loss_chunks):
            cfg = GPT2Config.from_name(name, remat=remat, loss_chunk=loss_chunk)
            for strat, shape in STRATEGIES.items():
                layout = sharding.Layout(sharding.make_mesh(**shape(n_devices)))
                t0 = time.perf_counter()
                state_sh = step_lib.state_shardings(cfg, opt, layout)
                batch_sh = layout.batch_sharding()
                abstract = step_lib.with_shardings(step_lib.abstract_state(cfg, opt), state_sh)
                tok = jax.ShapeDtypeStruct((n_devices, seq), jnp.int32, sharding=batch_sh)
                step = step_lib.jit_train_step(step_lib.make_train_step(cfg, opt, sched, layout=layout),
                                               state_sh, batch_sh)
                mem = step.lower(abstract, {"inputs": tok, "targets": tok}).compile().memory_analysis()
                rec = dict(devices=n_devices, model=name, params_m=round(cfg.num_params / 1e6),
                           strategy=strat, remat=remat, loss_chunk=loss_chunk, argument_gb=mem.argument_size_in_bytes / 1e9,
                           output_gb=mem.output_size_in_bytes / 1e9, alias_gb=mem.alias_size_in_bytes / 1e9,
                           temp_gb=mem.temp_size_in_bytes / 1e9, compile_s=time.perf_counter() - t0)
                rec["total_gb"] = rec["argument_gb"] + rec["output_gb"] - rec["alias_gb"] + rec["temp_gb"]
                print("AOT " + json.dumps(rec), flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--models", nargs="+", default=["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"])
    ap.add_argument("--remat", nargs="+", default=["none", "full"])
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--loss_chunk", type=int, nargs="+", default=[0], help="GPT2Config.loss_chunk values")
    ap.add_argument("--_child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        measure(args._child, args.models, args.remat, args.seq, args.loss_chunk)
        return
    recs = []
    for n in args.devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        cmd = [sys.executable, "-m", "benchmarks.aot_memory", "--_child", str(n), "--models", *args.models,
               "--remat", *args.remat, "--seq", str(args.seq), "--loss_chunk", *map(str, args.loss_chunk)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        recs += [json.loads(l[4:]) for l in proc.stdout.splitlines() if l.startswith("AOT ")]
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
    print(f"Per-device GB of the train step (AdamW fp32 state, 1x{args.seq} tokens per device): "
          "params+opt state (arguments, donated) + XLA temporaries = total.\n")
    print("| model | devices | strategy | remat | loss chunk | state GB | temp GB | total GB | compile s |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for r in recs:
        print(f"| {r['model']} ({r['params_m']}M) | {r['devices']} | {r['strategy']} | {r['remat']} | {r['loss_chunk']} | "
              f"{r['argument_gb']:.2f} | {r['temp_gb']:.2f} | {r['total_gb']:.2f} | {r['compile_s']:.0f} |")


if __name__ == "__main__":
    main()
