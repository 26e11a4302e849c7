"""Ahead-of-time compile of the train step for a config's mesh, without data or running it: the
per-device memory XLA plans (compiled.memory_analysis()) and whether it fits a given HBM size.
Simulate a slice's device count on CPU with XLA_FLAGS=--xla_force_host_platform_device_count=N
(CPU fusion differs from TPU, so treat the numbers as an estimate)."""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

from gpt2_jax import sharding
from gpt2_jax.train import build, step as step_lib
from gpt2_jax.train.optimizer import learning_rate_schedule, make_optimizer

GIB = 1024**3


def _vocab_size(config) -> int:
    """The model's vocabulary without reading any data: explicit, trained-BPE size, or tokenizer's."""
    if int(config.model.get("vocab_size", 0)):
        return int(config.model.vocab_size)
    if int(config.data.get("tokenizer_vocab_size", 0)):
        return int(config.data.tokenizer_vocab_size)
    from gpt2_jax.tokenizer import Tokenizer
    return Tokenizer.load(config.data.tokenizer).vocab_size


def compile_train_step(config, hbm_gb: float = 0.0) -> dict[str, Any]:
    """Lower + compile the jitted step on abstract inputs; returns sizes in bytes per device and
    `fits` (None if no HBM size is known: pass hbm_gb or set config.hbm_gb / a tpu preset)."""
    rules = build.rules(config)
    mesh = build.mesh(config)
    build.check_batch(config, sharding.data_parallel_size(mesh, rules))
    model_cfg = build.model_config(config, _vocab_size(config))
    opt_cfg = build.optimizer_config(config)
    total = int(config.total_steps)
    optimizer, schedule = make_optimizer(opt_cfg, total), learning_rate_schedule(opt_cfg, total)
    state_sh = step_lib.state_shardings(model_cfg, optimizer, mesh, rules)
    batch_sh = sharding.batch_sharding(mesh, rules)
    state = step_lib.with_shardings(step_lib.abstract_state(model_cfg, optimizer), state_sh)
    shape = (int(config.batch_size), int(config.seq_len))
    batch = {k: jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sh) for k in ("inputs", "targets")}
    step = step_lib.make_train_step(model_cfg, optimizer, schedule,
                                    grad_accum_steps=int(config.get("grad_accum_steps", 1)), seed=0)
    t0 = time.perf_counter()
    with sharding.activate(mesh, rules):
        compiled = step_lib.jit_train_step(step, state_sh, batch_sh).lower(state, batch).compile()
    seconds = time.perf_counter() - t0
    ma = compiled.memory_analysis()
    args, out, alias, temp = (int(getattr(ma, f"{k}_size_in_bytes", 0)) for k in
                              ("argument", "output", "alias", "temp"))
    total_bytes = args + out - alias + temp
    hbm = float(hbm_gb or config.get("hbm_gb", 0.0))
    return {"mesh": dict(mesh.shape), "devices": mesh.devices.size, "num_params": model_cfg.num_params,
            "argument_bytes": args, "output_bytes": out, "alias_bytes": alias, "temp_bytes": temp,
            "per_device_bytes": total_bytes, "hbm_gb": hbm or None,
            "fits": (total_bytes <= hbm * GIB) if hbm else None, "compile_sec": seconds}


def format_report(r: dict[str, Any]) -> str:
    g = lambda b: f"{b / GIB:.3f} GiB"  # noqa: E731
    lines = [f"mesh {r['mesh']} ({r['devices']} devices), {r['num_params'] / 1e6:.1f}M params, "
             f"compiled in {r['compile_sec']:.1f}s",
             f"per device: arguments {g(r['argument_bytes'])} + outputs {g(r['output_bytes'])} "
             f"- donated/aliased {g(r['alias_bytes'])} + temporaries {g(r['temp_bytes'])} "
             f"= {g(r['per_device_bytes'])}"]
    if r["hbm_gb"]:
        verdict = "FITS" if r["fits"] else "DOES NOT FIT"
        lines.append(f"{verdict} in {r['hbm_gb']:.1f} GiB HBM per device "
                     f"({r['per_device_bytes'] / (r['hbm_gb'] * GIB):.0%} used)")
    else:
        lines.append("no HBM size given (--hbm_gb or a --tpu preset): fit not checked")
    return "\n".join(lines)
