"""Host process settings for the command-line entry points (`gpt2-jax`, `experiments.main`).

XLA:CPU allocates each execution's temporaries with `malloc`. glibc serves blocks above its mmap
threshold (at most 32 MB) with a fresh `mmap` and unmaps them on free, so every train or eval
step faults its large buffers (e.g. the [tokens, 50257] logits) in page by page again: ~51k minor
faults per 124M forward on this project's CPU machine, 2 us each. Keeping freed memory in the
heap removes them (BENCHMARKS.md, "Page faults"). Only processes we own change the allocator; the
library itself never does. `GPT2_JAX_MALLOC=default` leaves glibc as it is.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc <malloc.h>)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# The same settings as MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_MMAP_MAX_=0 MALLOC_ARENA_MAX=1.
_SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_ARENA_MAX, 1))


def keep_freed_memory() -> bool:
    """Tell glibc malloc to keep freed blocks for reuse instead of returning them to the OS (no
    mmap for large blocks, no trimming, one arena), when JAX runs on the CPU. Returns whether the
    settings were applied: False on TPU/GPU hosts, non-glibc systems or with GPT2_JAX_MALLOC=default.
    Call it after jax.distributed.initialize: it asks JAX for its backend."""
    if os.environ.get("GPT2_JAX_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    import jax
    if jax.default_backend() != "cpu":  # accelerator hosts keep temporaries in device memory
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)
