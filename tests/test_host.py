"""gpt2_jax.host: the allocator setting the command-line entry points apply."""
import os
import subprocess
import sys

import pytest

_PROBE = """
import resource, sys
from gpt2_jax import host
applied = host.keep_freed_memory() if sys.argv[1] == "keep" else False
import jax, jax.numpy as jnp
step = jax.jit(lambda x, w: jax.nn.logsumexp(x @ w, axis=-1))  # a 205 MB temporary, like the logits
x, w = jnp.ones((1024, 64)), jnp.ones((64, 50_000))
def faults_of_one_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step(x, w).block_until_ready()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_step()
print(applied, min(faults_of_one_step() for _ in range(8)))  # under load a step may still grow the heap
"""


def _probe(mode: str, **extra_env) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra_env
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_removes_the_page_faults_of_repeated_large_temporaries():
    applied, kept = _probe("keep")
    _, default = _probe("default")
    opted_out, opted_out_faults = _probe("keep", GPT2_JAX_MALLOC="default")
    assert applied == "True" and opted_out == "False"
    assert default > 40_000 and opted_out_faults > 40_000  # 205 MB / 4 KiB pages, re-faulted every step
    assert kept < 1_000


@pytest.mark.parametrize("entry", ["cli", "experiments"])
def test_entry_points_apply_it(monkeypatch, entry):
    from experiments import main as experiments_main
    from gpt2_jax import cli, host
    calls = []
    monkeypatch.setattr(host, "keep_freed_memory", lambda: calls.append(1) or True)
    if entry == "cli":
        assert cli.main(["--help"]) == 0
    else:
        assert experiments_main.main(["--list"]) == 0
    assert calls == [1]
