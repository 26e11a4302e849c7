"""gpt2_jax/train/loop.py end to end (tiny_test = 2-layer model on Tiny Shakespeare): meshes and
processes give the same losses, SIGKILL + restart is bitwise exact, SIGTERM saves and exits, a
non-finite loss stops the run, and the default tiny_shakespeare run learns."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gpt2_jax.errors import TrainingError
from gpt2_jax.train.metrics import read_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[1]
# n_head=8 so tensor=8 really splits heads; evals off so only train steps run
COMMON = ["model.n_head=8", "eval_every=0", "console=false", "checkpoint_every=100", "log_every=1"]
# name -> (data, fsdp, tensor), extra overrides; loss_chunk=24 does not divide seq_len (padded chunk)
# (and both mix runs evaluate at steps 10 and 20, so the fused loss's eval path runs sharded too)
MESHES = {"dp": ((8, 1, 1), []), "fsdp": ((1, 8, 1), []), "tp": ((1, 1, 8), []),
          "mix": ((2, 2, 2), ["eval_every=10"]), "mix_loss_chunk": ((2, 2, 2), ["loss_chunk=24", "eval_every=10"])}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """Subprocesses of this module share a persistent XLA cache: the same tiny step compiles once."""
    global _CACHE
    _CACHE = str(tmp_path_factory.mktemp("xla_cache"))


_CACHE = ""


def _env(devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), JAX_COMPILATION_CACHE_DIR=_CACHE,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}" if devices > 1 else ""
    return env


def _losses(workdir):
    return [r["loss"] for r in read_jsonl(pathlib.Path(workdir) / "metrics.jsonl") if "loss" in r]


def _main_cmd(workdir, *overrides, experiment="tiny_test", mode="train"):
    return [sys.executable, "-m", "experiments.main", f"--experiment={experiment}", f"--mode={mode}", f"--workdir={workdir}",
            *[f"--config.{o}" for o in overrides]]


_MESH_SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    from experiments import registry
    from gpt2_jax.train import checkpoint, loop
    root, common, meshes = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    for name, ((d, f, t), extra) in meshes.items():
        cfg = registry.train_config("tiny_test", overrides=common + extra + [f"mesh.data={d}", f"mesh.fsdp={f}",
                                                                          f"mesh.tensor={t}"])
        s = loop.train(cfg, f"{root}/{name}")
        assert s["mesh"] == {"data": d, "fsdp": f, "tensor": t}, s["mesh"]
        pathlib.Path(f"{root}/{name}/final_eval_loss").write_text(repr(s["final_eval_loss"]))
        print("done", name, flush=True)
""")


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """One process with 1 device and one with 8 simulated devices running 5 meshes, in parallel."""
    root = tmp_path_factory.mktemp("meshes")
    single = subprocess.Popen(_main_cmd(root / "single", *COMMON), env=_env(1), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    multi = subprocess.Popen([sys.executable, "-c", _MESH_SCRIPT, str(root), json.dumps(COMMON),
                              json.dumps(MESHES)], env=_env(8), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for p in (single, multi):
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    return root


def test_meshes_match_single_device(reference_runs):
    want = _losses(reference_runs / "single")
    assert len(want) == 20 and want[-1] < want[0] - 0.5
    for name in MESHES:
        got = _losses(reference_runs / name)
        assert len(got) == 20, name
        np.testing.assert_allclose(got, want, rtol=1e-3, err_msg=f"mesh {name} {MESHES[name]}")
    evals = [float((reference_runs / name / "final_eval_loss").read_text()) for name in ("mix", "mix_loss_chunk")]
    assert np.isfinite(evals[0]) and evals[1] == pytest.approx(evals[0], rel=1e-3)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_8_devices(reference_runs, tmp_path):
    port = _free_port()
    procs = [subprocess.Popen(_main_cmd(tmp_path, *COMMON, "mesh.data=-1") + [
        f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
        env=_env(4), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summary = json.loads(outs[0][0].split("summary ", 1)[1])
    assert summary["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
    assert "summary" in outs[1][0]  # process 1 ran the same loop but wrote nothing
    np.testing.assert_allclose(_losses(tmp_path), _losses(reference_runs / "dp"), rtol=1e-5)


_KILL_SCRIPT = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    from experiments import registry
    from gpt2_jax.train import checkpoint, loop
    workdir = pathlib.Path(sys.argv[1])
    first_run = not (workdir / "checkpoints").exists()
    def crash(step):  # first run only: die hard at step 13, once checkpoint 10 is on disk
        if first_run and step == 13:
            deadline = time.time() + 60
            while not (workdir / "checkpoints" / "10" / "commit_success.txt").exists() and time.time() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
    cfg = registry.train_config("tiny_test", overrides=sys.argv[2:])
    s = loop.train(cfg, str(workdir), on_step=crash)
    print("start_step", s["start_step"], flush=True)
""")


def test_sigkill_and_restart_continue_bitwise(reference_runs, tmp_path):
    cmd = [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path), *COMMON, "checkpoint_every=5"]
    first = subprocess.run(cmd, env=_env(1), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert max(r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")) == 12  # logged past checkpoint 10
    second = subprocess.run(cmd, env=_env(1), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "start_step 10" in second.stdout
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == list(range(1, 21))
    assert _losses(tmp_path) == _losses(reference_runs / "single")  # bitwise, every step


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = subprocess.Popen(_main_cmd(tmp_path, *COMMON, "total_steps=5000", "checkpoint_every=4000"),
                            env=_env(1), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(read_jsonl(tmp_path / "metrics.jsonl")) < 5:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.split("summary ", 1)[1])
    assert summary["preempted"] is True and 5 <= summary["final_step"] < 5000
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [summary["final_step"]]
    assert (tmp_path / "checkpoints" / str(saved[0]) / "commit_success.txt").exists()


def test_nonfinite_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    from experiments import registry
    from gpt2_jax import workdir as workdir_lib
    from gpt2_jax.train import checkpoint, loop
    # lr 0 at step 1 (warmup), then 1e30: the params blow up at step 2
    cfg = registry.train_config("tiny_test", overrides=["optimizer.peak_lr=1e30", "optimizer.warmup_steps=2",
                                                      "checkpoint_every=1", "log_every=5", "console=false"])
    with pytest.raises(TrainingError, match=r"non-finite .* at step 2;.*last good checkpoint \(step 1\)"):
        loop.train(cfg, str(tmp_path))
    ck = checkpoint.Checkpointer(tmp_path)
    assert ck.steps() == [1]
    ck.close()
    params, _ = workdir_lib.load_params_from_workdir(tmp_path)
    assert all(np.isfinite(np.asarray(p)).all() for p in __import__("jax").tree.leaves(params))


def test_resume_with_another_model_is_refused_and_leaves_checkpoints_alone(tmp_path):
    from experiments import registry
    from gpt2_jax.errors import ConfigError
    from gpt2_jax.train import loop
    base = ["total_steps=2", "checkpoint_every=2", "log_every=1", "eval_every=0", "console=false"]
    loop.train(registry.train_config("tiny_test", overrides=base), str(tmp_path))
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / "checkpoints").rglob("*"))
    for override, match in (("model.n_embd=128", r"n_embd=64 in checkpoints/2 but 128 in this config"),
                            ("optimizer.grad_clip=0.0", r"optimizer state in checkpoints/2 does not fit")):
        with pytest.raises(ConfigError, match=match):
            loop.train(registry.train_config("tiny_test", overrides=base + ["total_steps=4", override]), str(tmp_path))
    after = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / "checkpoints").rglob("*"))
    assert after == before and not (tmp_path / "checkpoints_corrupt").exists()


def test_readme_main_job_trains_below_unigram_entropy_and_writes_the_report(tmp_path):
    """README command 1 (`python -m experiments.main`, no flags: the tiny_shakespeare job) run as
    written in a fresh directory: loss beats the corpus's unigram entropy; eval, samples, report."""
    out = subprocess.run([sys.executable, "-m", "experiments.main"], env=_env(1), cwd=tmp_path,
                         capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    tmp_path = tmp_path / "runs" / "tiny_shakespeare"
    report = (tmp_path / "report.md").read_text()
    assert "![training curve](training_curve.png)" in report and (tmp_path / "training_curve.png").stat().st_size > 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(results) == {"lambada", "wikitext2", "ptb"} and 0 <= results["lambada"]["acc"] <= 100
    assert "Zero-shot evaluation" in report and (tmp_path / "eval" / "results.png").is_file()
    samples = json.loads((tmp_path / "samples.json").read_text())
    assert len(samples) == 2 and all(s.startswith(p) for s, p in zip(samples, ("ROMEO:", "JULIET:")))
    summary = json.loads(out.stdout.rsplit("\nsummary ", 1)[1])
    from gpt2_jax.data.shards import load_token_stream
    from gpt2_jax.data.sources import DataConfig
    from gpt2_jax.tokenizer import Tokenizer
    from gpt2_jax.workdir import tokenizer_spec
    tok = Tokenizer.load(tokenizer_spec(tmp_path))
    stream = load_token_stream(DataConfig(tokenizer=tok.name), tok)
    counts = np.bincount(stream, minlength=tok.vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    unigram_nats = float(-(p * np.log(p)).sum())
    print(f"unigram entropy {unigram_nats:.3f} nats; final loss {summary['final_loss']:.3f}, eval "
          f"{summary['final_eval_loss']:.3f}; {summary['tokens_per_sec']:.0f} tok/s, MFU {summary['mfu']:.1%}, "
          f"{summary['runtime_sec']:.0f}s")
    assert summary["final_step"] == 300 and not summary["preempted"]
    assert summary["final_eval_loss"] < unigram_nats - 1.0
    assert summary["final_loss"] < unigram_nats - 1.0
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert any("eval_loss" in r for r in records) and all(r["tokens_per_sec"] > 0 for r in records if "loss" in r)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_eval_after_training_runs_the_eval_suite_on_the_final_checkpoint(tmp_path, monkeypatch):
    import jax
    from experiments import job, registry
    from gpt2_jax.evals import runner
    from gpt2_jax.train import checkpoint, step as step_lib
    from gpt2_jax.train.optimizer import OptimizerConfig, make_optimizer
    from gpt2_jax.config import GPT2Config
    cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=8, vocab_size=32)
    opt = make_optimizer(OptimizerConfig(), 10)
    state = jax.jit(lambda k: step_lib.init_state(cfg, opt, k))(jax.random.key(0))
    ck = checkpoint.Checkpointer(tmp_path)
    ck.save(7, state, {"model_config": cfg.to_dict(), "tokenizer": "gpt2"})
    ck.wait()
    ck.close()
    calls = []
    monkeypatch.setattr(runner, "run_eval", lambda model, tasks, **kw: calls.append((model, tasks, kw)) or {"ok": 1})
    config = registry.get_config("tiny_test", overrides=["eval_after_training=['lambada', 'cbt_cn']",
                                                         "job.eval_limit=5"])
    train_cfg, job_cfg = registry.split(config)
    assert job.run_evals(train_cfg.data.data_dir, job_cfg, str(tmp_path)) == {"ok": 1}
    (params, got_cfg), tasks, kw = calls[0]
    assert got_cfg == cfg and tasks == ["lambada", "cbt_cn"] and kw["limit"] == 5 and kw["mode"] == "paper"
    assert str(kw["output"]) == str(tmp_path / "eval" / "results.json")
    np.testing.assert_array_equal(np.asarray(params["wte"]), np.asarray(state.params["wte"]))
    assert job.run_evals(None, registry.split(registry.get_config("tiny_test"))[1], str(tmp_path)) is None  # no evals
    assert len(calls) == 1
