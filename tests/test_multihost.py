"""Runs spanning 2 local processes x 4 CPU devices (gloo) against one process with 8 devices, on the
(data, fsdp, tensor) = (2, 2, 2) mesh of tiny_test: the main job (train, zero-shot eval, samples),
`gpt2-jax eval` and `sample`, SIGTERM to every process and the rerun, a checkpoint resumed by
another process count on another mesh (2 -> 1 and 1 -> 2), and a killed or failing process.

Processes are started by a small driver around `python -m experiments.main` that can slow each
step (time to send a signal) and records the token ids each process fed at each step, so the
global batches of runs with different process counts can be compared. To save each process the
~6 s CPU of importing TensorFlow, the driver runs without it (the thread prefetcher feeds the same
batches as tf.data: tests/test_data_pipeline.py); the 2-process job runs the real entry point.
Every launch has a timeout that names the processes still running; all share one persistent
compilation cache.
"""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gpt2_jax.train.metrics import read_jsonl

pytestmark = pytest.mark.multiprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOTAL = 20  # tiny_test's total_steps
MESH = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]
TRAIN = MESH + ["console=false", "log_every=1"]
DUMP = ["data.dump_batches=3"]  # the 2-process job also dumps its first global batches
JOB = TRAIN + ["eval_after_training=['lambada']", "job.eval_limit=16", "job.prompts=['ROMEO:', 'JULIET:']"]
EVAL = ["--tasks=lambada", "--limit=16", "--batch-size=8"]
FLAGS = {"experiments": ("--coordinator_address", "--num_processes", "--process_id"),
         "cli": ("--coordinator-address", "--num-processes", "--process-id")}
TIMING = ("seconds", "scored_tokens_per_sec", "forward_tokens_per_sec")  # the only per-process eval fields

# MH_STEP_SECONDS=S   sleep S after each step is dispatched (time to send a signal)
# MH_RECORD=PREFIX    write PREFIX.p<process>.npz: the batch rows this process fed at each step
# MH_NO_TF=1          run as if TensorFlow were not installed
DRIVER = textwrap.dedent("""
    import os, sys, time
    if os.environ.get("MH_NO_TF"):
        sys.modules["tensorflow"] = None  # imports of it fail, find_spec finds nothing
    import numpy as np
    from gpt2_jax.data import pipeline
    from gpt2_jax.train import loop

    pause, record = float(os.environ.get("MH_STEP_SECONDS", "0")), os.environ.get("MH_RECORD")
    fed, rows = {}, []
    if pause:
        train = loop.train
        def on_step(step):
            print(f"dispatched step {step}", flush=True)
            time.sleep(pause)
        loop.train = lambda *a, **k: train(*a, on_step=on_step, **k)
    if record:
        batches = pipeline.TrainData.train_batches
        def recorded(self, start, end):
            rows.append(self.process_index)
            for step, batch in enumerate(batches(self, start, end), start + 1):
                fed[step] = batch["inputs"].copy()
                yield batch
        pipeline.TrainData.train_batches = recorded

    from experiments import main
    status = main.main(sys.argv[1:])
    if record and fed:
        import jax
        steps = sorted(fed)
        np.savez(f"{record}.p{jax.process_index()}.npz", row=rows[-1], steps=steps,
                 inputs=np.stack([fed[s] for s in steps]))
    sys.exit(status)
""")


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    (root / "driver.py").write_text(DRIVER)
    return {"driver": root / "driver.py", "cache": root / "xla_cache", "logs": root / "logs"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launch:
    """`processes` copies of one command (2: with the coordinator flags of `style`), started together;
    output goes to log files so a stalled run can be diagnosed from them."""

    def __init__(self, tools, name, argv, *, processes, style="experiments", extra=lambda i: [], **env):
        self.name, self.t0 = name, time.time()
        port, devices = _port(), 8 // processes
        base = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
                    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                    JAX_COMPILATION_CACHE_DIR=str(tools["cache"]), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
        base = {k: v for k, v in base.items() if not k.startswith("MH_")}
        base.update({f"MH_{k.upper()}": str(v) for k, v in env.items()})
        tools["logs"].mkdir(exist_ok=True)
        self.procs, self.logs = [], []
        for i in range(processes):
            flags = []
            if processes > 1:
                names = FLAGS[style]  # experiments.main and gpt2-jax spell them differently
                flags = [f"{names[0]}=127.0.0.1:{port}", f"{names[1]}={processes}", f"{names[2]}={i}"]
            log = tools["logs"] / f"{name}.p{i}.log"
            with open(log, "w") as f:
                self.procs.append(subprocess.Popen([sys.executable, *argv, *extra(i), *flags], env=base, cwd=ROOT,
                                                   stdout=f, stderr=subprocess.STDOUT, start_new_session=True))
            self.logs.append(log)

    def output(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace")

    def reached(self, i: int, text: str, timeout: float = 300) -> bool:
        """Whether process i printed `text`; fails naming the process if it ended or stalled first."""
        if text in self.output(i):
            return True
        if self.procs[i].poll() is not None:
            pytest.fail(f"{self.name}: process {i} ended (status {self.procs[i].returncode}) before printing "
                        f"{text!r}:\n{self.output(i)[-3000:]}")
        if time.time() > self.t0 + timeout:
            self.kill()
            pytest.fail(f"{self.name}: process {i} did not print {text!r} within {timeout:.0f} s (stalled); "
                        f"its output:\n{self.output(i)[-3000:]}")
        return False

    def wait_for(self, i: int, text: str, timeout: float = 300) -> None:
        while not self.reached(i, text, timeout):
            time.sleep(0.1)

    def wait(self, timeout: float = 420) -> list[tuple[int, float]]:
        """(exit status, seconds since start) per process; fails naming every process still running."""
        deadline, ended = time.time() + timeout, {}
        while len(ended) < len(self.procs) and time.time() < deadline:
            for i, p in enumerate(self.procs):
                if i not in ended and p.poll() is not None:
                    ended[i] = (p.returncode, time.time() - self.t0)
            time.sleep(0.1)
        stalled = [i for i in range(len(self.procs)) if i not in ended]
        if stalled:
            self.kill()
            tails = "\n".join(f"--- process {i}:\n{self.output(i)[-2500:]}" for i in stalled)
            pytest.fail(f"{self.name}: process(es) {stalled} still running after {timeout:.0f} s (stalled; "
                        f"the others ended with {ended}):\n{tails}")
        return [ended[i] for i in range(len(self.procs))]

    def wait_ok(self, timeout: float = 420) -> list[str]:
        """Every process exits 0; their outputs."""
        for i, (status, _) in enumerate(self.wait(timeout)):
            assert status == 0, f"{self.name}: process {i} exited {status}:\n{self.output(i)[-4000:]}"
        return [self.output(i) for i in range(len(self.procs))]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: the process and nothing else
                p.wait()


def _main(tools, name, workdir, overrides, *, processes, mode="train", flags=(), **env):
    argv = [str(tools["driver"]), "--experiment=tiny_test", f"--mode={mode}", f"--workdir={workdir}", *flags,
            *[f"--config.{o}" for o in overrides]]
    return Launch(tools, name, argv, processes=processes, no_tf=1, **env)


def _summary(output: str) -> dict:
    assert "\nsummary " in output, output[-3000:]
    return json.loads(output.rsplit("\nsummary ", 1)[1].splitlines()[0])


def _losses(workdir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(pathlib.Path(workdir) / "metrics.jsonl") if "loss" in r}


def _batches(prefix) -> dict[int, np.ndarray]:
    """step -> the global batch's input ids, the processes' rows stacked in row order."""
    parts = sorted((np.load(f) for f in pathlib.Path(prefix).parent.glob(pathlib.Path(prefix).name + ".p*.npz")),
                   key=lambda z: int(z["row"]))
    assert parts, f"no batches recorded under {prefix}"
    steps = parts[0]["steps"]
    assert all((z["steps"] == steps).all() for z in parts)
    return {int(s): np.concatenate([z["inputs"][k] for z in parts]) for k, s in enumerate(steps)}


def _metrics(results: dict) -> dict:
    return {t: {k: v for k, v in m.items() if k not in TIMING} for t, m in results.items()}


def _assert_close(got, want, rel, where=""):
    """Nested dicts of numbers equal within `rel` (relative), everything else exactly."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k in want:
            _assert_close(got[k], want[k], rel, f"{where}/{k}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=rel, abs=0), where
    else:
        assert got == want, where


# ------------------------------------------------------------------------ the main job, 2 vs 1
@pytest.fixture(scope="module")
def jobs(tools, tmp_path_factory):
    """The default --mode=job of tiny_test on one process with 8 devices (batches recorded) and,
    at the same time, on 2 processes x 4 devices through `python -m experiments.main` itself."""
    root = tmp_path_factory.mktemp("jobs")
    one = _main(tools, "job_1x8", root / "one", JOB, processes=1, mode="job", record=root / "one_batches")
    two = Launch(tools, "job_2x4", ["-m", "experiments.main", "--experiment=tiny_test", f"--workdir={root / 'two'}",
                                    *[f"--config.{o}" for o in JOB + DUMP]], processes=2)
    outs = one.wait_ok() + two.wait_ok()
    return {"root": root, "one": root / "one", "two": root / "two", "outputs": outs,
            "batches": _batches(root / "one_batches")}


def test_job_on_two_processes_equals_one_process(jobs):
    one, two = jobs["one"], jobs["two"]
    s1, *s2 = (_summary(o) for o in jobs["outputs"])
    assert s1["mesh"] == s2[0]["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    assert s1["final_step"] == s2[0]["final_step"] == s2[1]["final_step"] == TOTAL
    # same losses (the (2, 2, 2) program is the same on 8 devices of one or two processes) ...
    want = _losses(one)
    assert sorted(want) == list(range(1, TOTAL + 1))
    np.testing.assert_allclose([_losses(two)[s] for s in want], list(want.values()), rtol=1e-5)
    # the dumped global batches (gathered from both processes) are the ones one process consumed
    dumped = sorted((two / "batches").glob("step_*.npy"))
    assert [d.name for d in dumped] == [f"step_{i:06d}.npy" for i in (1, 2, 3)]
    for i, d in enumerate(dumped, 1):
        np.testing.assert_array_equal(np.load(d)[:, :-1], jobs["batches"][i])
    # ... the same zero-shot results (timings aside) and the same samples
    r1 = json.loads((one / "eval" / "results.json").read_text())
    r2 = json.loads((two / "eval" / "results.json").read_text())
    assert r1["lambada"]["n"] == 16
    _assert_close(_metrics(r2), _metrics(r1), rel=1e-6)
    for p in (0, 1):  # every process computed them (SPMD) and returned the same
        _assert_close(_metrics(s2[p]["eval"]), _metrics(r1), rel=1e-6)
    samples = json.loads((two / "samples.json").read_text())
    assert samples == json.loads((one / "samples.json").read_text())
    assert [s[:6] for s in samples] == ["ROMEO:", "JULIET"] and all(len(s) > 8 for s in samples)
    assert "Zero-shot evaluation" in (two / "report.md").read_text() and (two / "training_curve.png").is_file()
    # one throughput and MFU for the run, from process 0's clock and its chip peak
    assert s2[0]["peak_tflops"] == s2[1]["peak_tflops"] > 0
    assert s2[0]["tokens_per_sec"] == s2[1]["tokens_per_sec"] > 0
    assert s2[0]["mfu"] == s2[1]["mfu"] and 0 < s2[0]["mfu"] < 1


def test_gpt2_jax_eval_and_sample_on_two_processes_equal_one_process(tools, jobs, tmp_path):
    ckpt, outs = jobs["one"], {}
    commands = {n: {"eval": ["eval", *EVAL, f"--output={tmp_path / f'eval{n}' / 'results.json'}"],
                    "sample": ["sample", "--prompt=ROMEO:", "--max-new-tokens=24", "--seed=3"]} for n in (1, 2)}
    for command in ("eval", "sample"):  # 1 and 2 processes side by side
        runs = {n: Launch(tools, f"{command}_{n}proc", ["-m", "gpt2_jax.cli", *commands[n][command],
                                                        f"--checkpoint={ckpt}"], processes=n, style="cli")
                for n in (1, 2)}
        outs.update({f"{command}{n}": run.wait_ok() for n, run in runs.items()})
    r1 = json.loads((tmp_path / "eval1" / "results.json").read_text())
    r2 = json.loads((tmp_path / "eval2" / "results.json").read_text())
    _assert_close(_metrics(r2), _metrics(r1), rel=1e-6)
    assert r1["lambada"]["n"] == 16
    assert "wrote" in outs["eval2"][0] and "wrote" not in outs["eval2"][1]  # process 0 alone reports and writes
    text = lambda out: [line for line in out.splitlines() if line.startswith("ROMEO:")]
    assert len(text(outs["sample1"][0])) == 1 and text(outs["sample2"][0]) == text(outs["sample1"][0])
    assert text(outs["sample2"][1]) == []


# --------------------------------------------------------------------- preemption and resumes
def _preempted(launch, outputs) -> int:
    """The one step every process saved at, after SIGTERM."""
    summaries = [_summary(o) for o in outputs]
    steps = {s["final_step"] for s in summaries}
    assert all(s["preempted"] for s in summaries) and len(steps) == 1, summaries
    step = steps.pop()
    assert re.search(rf"preempted: checkpoint saved at step {step}; rerun the same command", outputs[0])
    return step


def _assert_continues_like_the_job(jobs, workdir, record, start):
    """The resumed run fed the uninterrupted run's global batches and reproduced its losses."""
    want, got = jobs["batches"], _batches(record)
    assert sorted(got) == list(range(start + 1, TOTAL + 1))
    for step, ids in got.items():
        np.testing.assert_array_equal(ids, want[step], err_msg=f"global batch of step {step}")
    ref = _losses(jobs["one"])
    losses = _losses(workdir)
    assert sorted(losses) == list(range(1, TOTAL + 1))
    np.testing.assert_allclose([losses[s] for s in ref], list(ref.values()), rtol=1e-5)


@pytest.fixture(scope="module")
def preempted(tools, tmp_path_factory):
    """SIGTERM mid-run to both processes of a 2-process run and to a 1-process (8 devices) run."""
    root = tmp_path_factory.mktemp("preempted")
    two = _main(tools, "sigterm_2x4", root / "two", TRAIN, processes=2, step_seconds=0.3, record=root / "two_first")
    one = _main(tools, "sigterm_1x8", root / "one", TRAIN, processes=1, step_seconds=0.3, record=root / "one_first")
    pending = [two, one]
    while pending:  # SIGTERM each run's processes once it reached step 6
        for launch in list(pending):
            if launch.reached(0, "dispatched step 6"):
                for p in launch.procs:
                    p.send_signal(signal.SIGTERM)
                pending.remove(launch)
        time.sleep(0.1)
    runs = {"root": root, "two": (two, two.wait_ok(300)), "one": (one, one.wait_ok(300))}
    shutil.copytree(root / "two", root / "two_to_one")  # the same checkpoint, for the 2 -> 1 resume
    return runs


def test_sigterm_to_every_process_saves_one_step_and_the_rerun_continues_exactly(tools, jobs, preempted):
    root = preempted["root"]
    launch, outputs = preempted["two"]
    step = _preempted(launch, outputs)
    assert 6 <= step < TOTAL and (root / "two" / "checkpoints" / str(step) / "commit_success.txt").is_file()
    assert max(_losses(root / "two")) == step  # nothing ran past the saved step
    rerun = _main(tools, "sigterm_rerun_2x4", root / "two", TRAIN, processes=2, record=root / "two_rerun")
    s0, s1 = (_summary(o) for o in rerun.wait_ok())
    assert s0["start_step"] == s1["start_step"] == step and s0["final_step"] == TOTAL and s0["resumed"]
    _assert_continues_like_the_job(jobs, root / "two", root / "two_rerun", step)
    # and bitwise what the uninterrupted 2-process job computed
    assert _losses(root / "two") == _losses(jobs["two"])


def test_two_process_checkpoint_resumes_on_one_process_and_another_mesh(tools, jobs, preempted):
    root = preempted["root"]
    step = _preempted(*preempted["two"])
    workdir = root / "two_to_one"  # a copy of the 2-process run as SIGTERM left it
    mesh = ["mesh.data=1", "mesh.fsdp=4", "mesh.tensor=2"]  # what the new run asks for
    resumed = _main(tools, "resume_2to1", workdir, TRAIN + mesh, processes=1, record=root / "two_to_one_batches")
    summary = _summary(resumed.wait_ok()[0])
    assert summary["start_step"] == step and summary["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2}
    _assert_continues_like_the_job(jobs, workdir, root / "two_to_one_batches", step)


def test_one_process_checkpoint_resumes_on_two_processes_and_another_mesh(tools, jobs, preempted):
    root = preempted["root"]
    step = _preempted(*preempted["one"])
    assert 6 <= step < TOTAL
    mesh = ["mesh.data=4", "mesh.fsdp=1", "mesh.tensor=2"]
    resumed = _main(tools, "resume_1to2", root / "one", TRAIN + mesh, processes=2, record=root / "one_to_two_batches")
    s0, s1 = (_summary(o) for o in resumed.wait_ok())
    assert s0["start_step"] == s1["start_step"] == step and s0["mesh"] == {"data": 4, "fsdp": 1, "tensor": 2}
    _assert_continues_like_the_job(jobs, root / "one", root / "one_to_two_batches", step)


# ------------------------------------------------------------------------------------ faults
def test_killed_process_stops_the_other_within_60_s_naming_it(tools, tmp_path):
    run = _main(tools, "sigkill", tmp_path, TRAIN, processes=2, step_seconds=0.3)
    run.wait_for(1, "dispatched step 4")
    run.procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    (status0, at0), (status1, _) = run.wait(timeout=120)
    assert status1 == -signal.SIGKILL
    assert status0 == 1 and at0 - (killed - run.t0) < 60, (status0, at0)
    out = run.output(0)
    assert re.search(r"FATAL \(process 0 of 2\): process 1 has not reported for \d+ s: it died \(killed, out of "
                     r"memory, preempted\) or its host is unreachable", out), out[-3000:]
    assert "Rerun the job on all hosts to resume from its newest checkpoint" in out


@pytest.mark.parametrize("bad", [1, 0])
def test_error_on_one_process_stops_both_at_once(tools, jobs, tmp_path, bad):
    """A user error on one process only (its --limit): it prints its one line and exits 2 at once,
    and the other, waiting in a collective or barrier, exits 1 naming it and its error (also when
    the failing one is process 0, whose exit takes the coordination service down)."""
    run = Launch(tools, f"error_on_p{bad}", ["-m", "gpt2_jax.cli", "eval", f"--checkpoint={jobs['one']}",
                                             "--tasks=lambada", f"--output={tmp_path / 'results.json'}"],
                 processes=2, style="cli", extra=lambda i: [f"--limit={0 if i == bad else 16}"])
    ended = run.wait(timeout=120)
    (status, at), (other_status, other_at) = ended[bad], ended[1 - bad]
    assert status == 2 and "gpt2-jax: error: limit=0 must be a positive integer" in run.output(bad), run.output(bad)
    assert other_status == 1 and other_at - at < 20, ended
    assert re.search(rf"FATAL \(process {1 - bad} of 2\): process {bad} failed \(InputError: limit=0 must be a "
                     r"positive integer \(or None for everything\)\); see its log", run.output(1 - bad)), \
        run.output(1 - bad)[-3000:]


def test_hung_process_is_named_by_the_watchdog_and_losing_process_0_stops_the_other(tools, tmp_path):
    """A process that stops answering (SIGSTOP: hung, or its host unreachable; its sockets stay open,
    so nothing errors) is named by the others' watchdog after --heartbeat_timeout; the process that
    then finds process 0, the coordinator, gone exits non-zero too (JAX aborts it, or the watchdog)."""
    # a shorter timeout than the default 30 s, so the test waits less
    run = _main(tools, "sigstop", tmp_path, TRAIN, processes=2, step_seconds=0.3, flags=["--heartbeat_timeout=15"])
    run.wait_for(1, "dispatched step 4")
    run.procs[1].send_signal(signal.SIGSTOP)
    stopped = time.time()
    while run.procs[0].poll() is None and time.time() < stopped + 60:
        time.sleep(0.1)
    run.procs[1].send_signal(signal.SIGCONT)
    (status0, at0), (status1, at1) = run.wait(timeout=90)
    assert status0 == 1 and 12 < at0 - (stopped - run.t0) < 30, (status0, at0)  # its last beat came <= 1 s before
    assert re.search(r"FATAL \(process 0 of 2\): process 1 has not reported for 1[5-9] s: it died", run.output(0)), \
        run.output(0)[-3000:]
    assert status1 in (1, -signal.SIGABRT) and at1 - at0 < 20, (status1, at1, at0)
    assert re.search(r"leader task was preempted/died|cannot reach the coordination service on process 0",
                     run.output(1)), run.output(1)[-3000:]
