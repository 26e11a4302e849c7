"""Faults during a real training run (tiny_test, 20 steps, a checkpoint every 5), each followed by a
rerun of the same command that must finish exactly like an uninterrupted run:

- SIGKILL while an async checkpoint is being written (its tmp dir is on disk, not yet committed);
- SIGTERM (preemption) during the main job (`--mode=job`): a checkpoint is saved at the step
  reached and the job stops there (no evals, no samples), exit 0;
- a NaN loss while the previous checkpoint is still being written: exit 1, one clear line, that
  checkpoint is committed and kept.

tests/test_train_loop.py already covers SIGKILL *between* saves, SIGTERM via experiments.main and a
NaN from a huge learning rate through the API; these are the remaining cases. Faults are injected
by a small driver (below) that wraps the real entry point; without FAULT_* variables it is exactly
`python -m experiments.main`.
"""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gpt2_jax.train.metrics import read_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = ["console=false", "eval_every=0", "log_every=1", "checkpoint_every=5"]
TOTAL = 20  # tiny_test's total_steps

# FAULT_STALL_SAVE=STEP:SECONDS   the async save of STEP sleeps before it commits (tmp dir on disk),
#                                 after creating the file FAULT_STALL_MARKER if that is set
# FAULT_NAN_AT_STEP=N             step N returns a NaN loss and NaN params
# FAULT_STEP_SECONDS=S            sleep S after each step is dispatched (time to send a signal)
DRIVER = textwrap.dedent("""
    import asyncio, os, sys, time

    stall = os.environ.get("FAULT_STALL_SAVE")
    if stall:
        from orbax.checkpoint._src.path import atomicity
        step, seconds = stall.split(":")
        commit = atomicity.AtomicRenameTemporaryPath.finalize

        async def slow_commit(self):
            if self.get_final().name == step:
                print(f"fault: save of step {step} stalls before its commit", flush=True)
                if os.environ.get("FAULT_STALL_MARKER"):
                    open(os.environ["FAULT_STALL_MARKER"], "w").close()
                await asyncio.sleep(float(seconds))
            return await commit(self)
        atomicity.AtomicRenameTemporaryPath.finalize = slow_commit

    nan_at = int(os.environ.get("FAULT_NAN_AT_STEP", "0"))
    if nan_at:
        import jax, jax.numpy as jnp
        from gpt2_jax.train import step as step_lib
        make = step_lib.make_train_step

        def make_poisoned(*args, **kwargs):
            inner = make(*args, **kwargs)
            def train_step(state, batch):
                state, metrics = inner(state, batch)
                poison = lambda x: jnp.where(state.step == nan_at, jnp.nan, x)
                return (state.replace(params=jax.tree.map(poison, state.params)),
                        dict(metrics, loss=poison(metrics["loss"])))
            return train_step
        step_lib.make_train_step = make_poisoned

    pause = float(os.environ.get("FAULT_STEP_SECONDS", "0"))
    if pause:
        from gpt2_jax.train import loop
        train = loop.train
        loop.train = lambda *a, **k: train(*a, on_step=lambda s: time.sleep(pause), **k)

    from experiments import main
    sys.exit(main.main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    """The driver script and a persistent XLA cache shared by every run of this module."""
    root = tmp_path_factory.mktemp("faults")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    return {"driver": driver, "cache": root / "xla_cache"}


def _env(tools, **faults):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=str(ROOT),
               JAX_COMPILATION_CACHE_DIR=str(tools["cache"]), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    for k in list(env):
        if k.startswith("FAULT_"):
            del env[k]
    env.update({f"FAULT_{k.upper()}": str(v) for k, v in faults.items()})
    return env


def _main_args(workdir):
    return ["--experiment=tiny_test", "--mode=train", f"--workdir={workdir}", *[f"--config.{o}" for o in OVERRIDES]]


def _job_args(workdir):
    return ["--experiment=tiny_test", "--mode=job", f"--workdir={workdir}", *[f"--config.{o}" for o in OVERRIDES]]


def _run(tools, args, **faults):
    return subprocess.run([sys.executable, str(tools["driver"]), *args], env=_env(tools, **faults), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _start(tools, args, **faults):
    return subprocess.Popen([sys.executable, str(tools["driver"]), *args], env=_env(tools, **faults), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _summary(stdout):
    assert "summary " in stdout, stdout[-2000:]
    return json.loads(stdout.split("summary ", 1)[1].splitlines()[0])


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_jsonl(pathlib.Path(workdir) / "metrics.jsonl") if "loss" in r]


def _steps(workdir):
    """Committed checkpoint steps (orbax's tmp dirs excluded)."""
    return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def _wait_for(predicate, proc, what, timeout=300):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run ended (status {proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _assert_finishes_like_reference(result, workdir, reference, start_step):
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(result.stdout)
    assert summary["resumed"] is True and summary["start_step"] == start_step
    assert summary["final_step"] == TOTAL and not summary["preempted"]
    # every step's loss, bitwise: the resumed run saw the same state, batches and schedule
    assert _losses(workdir) == _losses(reference)
    assert _steps(workdir) == [15, 20]
    assert not [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]


@pytest.fixture(scope="module")
def reference(tools, tmp_path_factory):
    """The uninterrupted run every faulted run is compared with."""
    workdir = tmp_path_factory.mktemp("reference")
    result = _run(tools, _main_args(workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [s for s, _ in _losses(workdir)] == list(range(1, TOTAL + 1))
    return workdir


def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_last_complete_one(tools, reference, tmp_path):
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    proc = _start(tools, _main_args(workdir), stall_save="10:600", stall_marker=marker)
    tmp_dir = workdir / "checkpoints" / "10.orbax-checkpoint-tmp"
    # the save of step 10 wrote its tmp dir and never commits; training goes on until the save of
    # step 15 waits for it: kill the process there
    _wait_for(lambda: marker.exists() and len(read_jsonl(workdir / "metrics.jsonl")) >= 15, proc,
              "the stalled save of step 10 and step 15")
    assert (tmp_dir / "params").is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert tmp_dir.is_dir() and not (workdir / "checkpoints" / "10").exists()
    assert _steps(workdir) == [5]
    assert max(s for s, _ in _losses(workdir)) == 15  # logged past the unfinished save

    rerun = _run(tools, _main_args(workdir))
    _assert_finishes_like_reference(rerun, workdir, reference, start_step=5)


def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes_like_an_uninterrupted_run(tools, reference, tmp_path):
    proc = _start(tools, _job_args(tmp_path), step_seconds=0.3)
    _wait_for(lambda: len(read_jsonl(tmp_path / "metrics.jsonl")) >= 7, proc, "7 logged steps")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    saved = re.search(r"preempted: checkpoint saved at step (\d+); rerun the same command to resume", out)
    assert saved, out[-2000:]
    step = int(saved.group(1))
    summary = _summary(out)
    assert summary["preempted"] is True and summary["final_step"] == step
    assert 7 <= step < TOTAL
    assert step in _steps(tmp_path) and (tmp_path / "checkpoints" / str(step) / "commit_success.txt").is_file()
    assert max(s for s, _ in _losses(tmp_path)) == step  # nothing ran past the saved step
    assert not (tmp_path / "samples.json").exists() and not (tmp_path / "report.md").exists()

    rerun = _run(tools, _main_args(tmp_path))
    _assert_finishes_like_reference(rerun, tmp_path, reference, start_step=step)


def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint_being_written(tools, reference, tmp_path):
    # checkpoint 10 is still being written (its commit stalls 3 s) when step 11 returns NaN
    first = _run(tools, _main_args(tmp_path), stall_save="10:3", nan_at_step=11)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "fault: save of step 10 stalls" in first.stdout  # the fault really hit an in-flight save
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    lines = [line for line in first.stderr.splitlines() if "non-finite" in line]
    assert len(lines) == 1, first.stderr[-3000:]
    assert re.search(r"non-finite .*loss=nan.* at step 11", lines[0])
    assert re.search(r"last good checkpoint \(step 10\)", lines[0]) and str(tmp_path / "checkpoints") in lines[0]
    assert re.search(r"rerun", lines[0])
    assert _steps(tmp_path) == [5, 10]
    assert (tmp_path / "checkpoints" / "10" / "commit_success.txt").is_file()
    assert max(s for s, _ in _losses(tmp_path)) == 10  # the NaN step is not logged as a loss

    import jax
    from gpt2_jax import workdir as workdir_lib
    params, _ = workdir_lib.load_params_from_workdir(tmp_path, step=10)
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))

    rerun = _run(tools, _main_args(tmp_path))
    _assert_finishes_like_reference(rerun, tmp_path, reference, start_step=10)
