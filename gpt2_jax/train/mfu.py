"""Model FLOPs utilisation: peak FLOP/s per chip from a table (bf16 dense, vendor numbers), or on
CPU a measured fp32 GEMM rate; plus per-chip HBM for the AOT memory check."""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

# device_kind substring (lower case) -> (peak bf16 dense TFLOP/s per chip, HBM GiB per chip).
# Order matters: the first match wins, so specific names come before their prefixes.
CHIPS: tuple[tuple[str, float, float], ...] = (
    ("tpu v6 lite", 918.0, 32.0),   # v6e (Trillium)
    ("tpu v6e", 918.0, 32.0),
    ("tpu v5 lite", 197.0, 16.0),   # v5e
    ("tpu v5e", 197.0, 16.0),
    ("tpu v5p", 459.0, 95.0),
    ("tpu v5", 459.0, 95.0),
    ("tpu v4", 275.0, 32.0),
    ("tpu v3", 123.0, 32.0),
    ("tpu v2", 45.0, 16.0),
    ("h200", 989.0, 141.0),
    ("h100", 989.0, 80.0),
    ("a100", 312.0, 80.0),
    ("l4", 121.0, 24.0),
    ("a10g", 125.0, 24.0),
    ("v100", 125.0, 32.0),
)
# TPU slice names as `gcloud` spells them ("v4-32", "v5p-128", "v5litepod-16", "v6e-8") -> chip kind.
_SLICE_KIND = {"v2": "tpu v2", "v3": "tpu v3", "v4": "tpu v4", "v5p": "tpu v5p",
               "v5litepod": "tpu v5 lite", "v5e": "tpu v5 lite", "v6e": "tpu v6 lite"}
# Generations whose slice name counts TensorCores (2 per chip) rather than chips.
_CORES_PER_CHIP = {"v2": 2, "v3": 2, "v4": 2, "v5p": 2}


def chip_spec(device_kind: str) -> tuple[float, float] | None:
    """(peak TFLOP/s, HBM GiB) for a jax Device.device_kind, or None if unknown (e.g. CPU)."""
    kind = device_kind.lower()
    for name, tflops, hbm in CHIPS:
        if name in kind:
            return tflops, hbm
    return None


def slice_chips(slice_name: str) -> tuple[str, int]:
    """("tpu v4", 16) for "v4-32": the chip kind and number of chips of a named TPU slice."""
    gen, _, count = slice_name.lower().partition("-")
    if gen not in _SLICE_KIND or not count.isdigit():
        from gpt2_jax.errors import ConfigError
        raise ConfigError(f"unknown TPU slice {slice_name!r}; expected GEN-COUNT with GEN in "
                          f"{sorted(_SLICE_KIND)}, e.g. v4-32, v5p-128, v5litepod-16, v6e-8.")
    return _SLICE_KIND[gen], max(1, int(count) // _CORES_PER_CHIP.get(gen, 1))


@functools.lru_cache(maxsize=None)
def measured_cpu_tflops(n: int = 1024, repeats: int = 20) -> float:
    """Host fp32 GEMM rate (TFLOP/s) on one CPU device, best of `repeats`: XLA's CPU matmul uses
    all cores, so this is the whole machine's peak, whatever the simulated device count. Best of
    `repeats` because other processes only ever slow it down. Cached per process. (A local device:
    jax.devices()[0] may belong to another process, and timing a transfer there measured nothing.)"""
    cpu = jax.local_devices(backend="cpu")[0]
    a = jax.device_put(jnp.ones((n, n), jnp.float32), cpu)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def peak_tflops(devices=None, override: float = 0.0) -> float:
    """Total peak TFLOP/s of `devices` (default: all): `override` per device if > 0, else the chip
    table, else (CPU) the measured GEMM rate of this host once, shared by all its devices, times
    the number of hosts. A multi-process run decides it on process 0 (train.loop broadcasts it)."""
    devices = list(devices if devices is not None else jax.devices())
    if override > 0:
        return override * len(devices)
    spec = chip_spec(devices[0].device_kind)
    if spec is not None:
        return spec[0] * len(devices)
    hosts = len({d.process_index for d in devices})
    return measured_cpu_tflops() * hosts


def mfu(tokens_per_sec: float, flops_per_token: float, peak: float) -> float:
    """Fraction of peak spent on the model's matmul FLOPs (PaLM's MFU)."""
    return tokens_per_sec * flops_per_token / (peak * 1e12) if peak > 0 else 0.0
