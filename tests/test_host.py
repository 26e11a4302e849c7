"""gpt2_jax.host: the allocator setting the command-line entry points apply.

The probe is a plain malloc/write/free cycle in one thread, so the fault counts do not depend on
XLA's thread pool or on machine load. What the setting does to an XLA step (the logits-sized
temporaries) is measured by `python -m benchmarks.page_faults`, not asserted here.
"""
import os
import subprocess
import sys

import pytest

_PROBE = """
import ctypes, ctypes.util, resource, sys
from gpt2_jax import host
applied = host.keep_freed_memory() if sys.argv[1] == "keep" else False
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.argtypes, libc.malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
libc.free.argtypes, libc.free.restype = (ctypes.c_void_p,), None
size = 205 << 20  # the 124M model's [1024, 50257] fp32 logits: above glibc's largest mmap threshold
def faults_of_one_cycle():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
first = faults_of_one_cycle()
print(applied, first, faults_of_one_cycle())
"""


def _probe(mode: str, **extra_env) -> tuple[str, int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra_env
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return out[0], int(out[1]), int(out[2])


def _pages_per_fault() -> int:
    """4 KiB pages normally; 2 MiB when transparent huge pages back every anonymous mapping."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return 512 if "[always]" in f.read() else 1
    except OSError:
        return 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_reuses_a_freed_large_block_without_page_faults():
    pages = (205 << 20) // 4096 // _pages_per_fault()
    applied, kept_first, kept_again = _probe("keep")
    _, default_first, default_again = _probe("default")
    opted_out, _, opted_out_again = _probe("keep", GPT2_JAX_MALLOC="default")
    assert applied == "True" and opted_out == "False"
    # Every cycle faults the whole block in again when glibc mmaps and unmaps it ...
    assert default_first >= 0.9 * pages and default_again >= 0.9 * pages and opted_out_again >= 0.9 * pages
    # ... while the kept heap faults it once and then reuses it.
    assert kept_first >= 0.9 * pages and kept_again < 0.01 * pages


@pytest.mark.parametrize("entry", ["cli", "experiments"])
def test_entry_points_apply_it_once_a_command_runs(monkeypatch, tmp_path, entry):
    """Both entry points set the allocator when they run a command (after jax.distributed would
    start), not for --help or --list."""
    from experiments import main as experiments_main
    from gpt2_jax import cli, host
    calls = []
    monkeypatch.setattr(host, "keep_freed_memory", lambda: calls.append(1) or True)
    if entry == "cli":
        assert cli.main(["--help"]) == 0 and calls == []
        assert cli.main(["report", str(tmp_path)]) == 2  # not a workdir: fails after the setting
    else:
        assert experiments_main.main(["--list"]) == 0 and calls == []
        assert experiments_main.main(["--experiment=tiny_test", "--mode=train", f"--workdir={tmp_path}",
                                      f"--config.data.source={tmp_path}/missing.txt"]) == 2
    assert calls == [1]


def test_keep_freed_memory_is_a_cpu_only_setting(monkeypatch):
    import jax

    from gpt2_jax import host
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert host.keep_freed_memory() is False
