"""Ahead-of-time compile of the train step for a config's mesh, without data or running it: the
per-device memory XLA plans (compiled.memory_analysis()) and whether it fits a given HBM size.
Simulate a slice's device count on CPU with XLA_FLAGS=--xla_force_host_platform_device_count=N
(CPU fusion differs from TPU, so treat the numbers as an estimate)."""
from __future__ import annotations

import time
from typing import Any

from gpt2_jax.train import build
from gpt2_jax.train.config import TrainConfig

GIB = 1024**3


def compile_train_step(config: Any, hbm_gb: float = 0.0) -> dict[str, Any]:
    """Lower + compile the run's jitted step on abstract inputs; returns sizes in bytes per device
    and `fits` (None if no HBM size is known: pass hbm_gb or set config.hbm_gb / a tpu preset)."""
    config = TrainConfig.coerce(config)
    run = build.assemble(config, build.vocab_size_without_data(config))
    t0 = time.perf_counter()
    compiled = run.train_step.lower(run.abstract_state(), run.abstract_batch()).compile()
    seconds = time.perf_counter() - t0
    ma = compiled.memory_analysis()
    args, out, alias, temp = (int(getattr(ma, f"{k}_size_in_bytes", 0)) for k in
                              ("argument", "output", "alias", "temp"))
    total_bytes = args + out - alias + temp
    hbm = float(hbm_gb or config.hbm_gb)
    mesh = run.layout.mesh
    return {"mesh": dict(mesh.shape), "devices": mesh.devices.size, "num_params": run.model.num_params,
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
