"""experiments/: registry (locked, commented configs; typed overrides), TPU presets that fit their
slices, the CLI's one-line errors (exit 2), --mode=aot memory report, and the launcher's dry run."""
import math
import os
import pathlib
import re
import shlex
import subprocess
import sys

import ml_collections
import pytest

from experiments import launch, main as main_mod, registry
from experiments.configs import gpt2_paper
from gpt2_jax.errors import ConfigError
from gpt2_jax.train import mfu

ROOT = pathlib.Path(__file__).resolve().parents[1]
REQUIRED = ["total_steps", "checkpoint_every", "log_every", "seed", "batch_size", "mesh.data", "mesh.fsdp",
            "mesh.tensor", "model.name", "data.source", "optimizer.peak_lr", "grad_accum_steps", "dtype",
            "eval_every", "eval_batches", "keep_checkpoints", "logical_axis_rules", "eval_after_training"]


def _leaves(cfg, prefix=""):
    for k, v in cfg.items():
        if isinstance(v, ml_collections.ConfigDict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_every_experiment_is_locked_and_complete():
    assert {"tiny_test", "tiny_shakespeare", "gpt2_124m", "gpt2_355m", "gpt2_774m", "gpt2_1558m"} <= set(
        registry.names())
    for name in registry.names():
        cfg = registry.get_config(name)
        assert cfg.name == name
        keys = set(_leaves(cfg))
        assert set(REQUIRED) <= keys, (name, set(REQUIRED) - keys)
        with pytest.raises(AttributeError):
            cfg.not_a_field = 1  # locked: typos cannot add fields
    paper = registry.get_config("gpt2_355m")
    assert (paper.seq_len, paper.batch_size, paper.model.name) == (1024, 512, "gpt2-medium")
    assert paper.optimizer.peak_lr < registry.get_config("gpt2_124m").optimizer.peak_lr


def test_every_config_field_has_a_comment():
    """lm1b style: each `config.x = ...` line in base.py carries a comment, and no experiment adds
    a field that base.py does not define (and so does not document)."""
    src = (ROOT / "experiments" / "configs" / "base.py").read_text().splitlines()
    assigned = {}
    for line in src:
        m = re.match(r"\s*config\.([\w.]+) = (?!ml_collections\.ConfigDict\(\))", line)
        if m:
            assert "#" in line, f"no comment: {line.strip()}"
            assigned[m.group(1)] = line
    for name in registry.names():
        assert set(_leaves(registry.get_config(name))) <= set(assigned), name


def test_overrides_are_typed():
    cfg = registry.get_config("tiny_test", overrides=[
        "total_steps=7", "optimizer.peak_lr=1e-2", "async_checkpointing=false", "data.source=x.txt",
        "eval_after_training=['lambada', 'cbt_cn']", "--config.mesh.fsdp=2"])
    assert (cfg.total_steps, cfg.optimizer.peak_lr, cfg.async_checkpointing) == (7, 1e-2, False)
    assert cfg.data.source == "x.txt" and cfg.eval_after_training == ["lambada", "cbt_cn"] and cfg.mesh.fsdp == 2
    with pytest.raises(ConfigError, match="unknown config key 'optimizer.lr'.*peak_lr"):
        registry.get_config("tiny_test", overrides=["optimizer.lr=1"])
    with pytest.raises(ConfigError, match="bad value for config key 'total_steps'"):
        registry.get_config("tiny_test", overrides=["total_steps=many"])
    with pytest.raises(ConfigError, match="is a group"):
        registry.get_config("tiny_test", overrides=["mesh=4"])
    with pytest.raises(ConfigError, match="unknown experiment 'gpt5'"):
        registry.get_config("gpt5")


@pytest.mark.parametrize("size,tpu", sorted(gpt2_paper.TPU_PRESETS))
def test_tpu_presets_fill_their_slice(size, tpu):
    cfg = registry.get_config(f"gpt2_{size}", tpu=tpu)
    _, chips = mfu.slice_chips(tpu)
    assert cfg.mesh.data * cfg.mesh.fsdp * cfg.mesh.tensor == chips
    micro = cfg.batch_size // cfg.grad_accum_steps
    assert cfg.batch_size % cfg.grad_accum_steps == 0 and micro % (cfg.mesh.data * cfg.mesh.fsdp) == 0
    assert cfg.hbm_gb > 0 and cfg.tpu == tpu and cfg.dtype == "bfloat16"


def test_unknown_preset_and_list(capsys):
    with pytest.raises(ConfigError, match="no TPU preset for gpt2_124m on 'v2-8'"):
        registry.get_config("gpt2_124m", tpu="v2-8")
    assert main_mod.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in registry.names()) and "v4-32" in listed


def _run_cli(*args, devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.run([sys.executable, "-m", "experiments.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_cli_unknown_experiment_is_one_line_exit_2(tmp_path):
    out = _run_cli("--experiment=gpt5", f"--workdir={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert out.stderr.startswith("python -m experiments.main: error: unknown experiment 'gpt5'")


@pytest.mark.parametrize("args,match", [
    (["--config.optimizer.lr=1"], "unknown config key 'optimizer.lr'"),
    (["--config.mesh.data=3"], r"mesh data×fsdp×tensor = 3×1×1 = 3 but 1 devices"),
    (["--config.mesh.tensor=-1", "--config.mesh.data=-1"], "more than one -1"),
    (["--config.data.source=/nonexistent/corpus.txt"], "corpus file not found: /nonexistent/corpus.txt"),
    (["--config.data.source={empty}"], "empty corpus"),
    (["--config.data.source={empty}", "--config.data.tokenizer_vocab_size=0"], "empty corpus"),
    (["--config.batch_size=6", "--config.grad_accum_steps=4"], "not divisible by grad_accum_steps=4"),
    (["--bogus=1"], "unknown argument '--bogus=1'"),
    (["--config.optimizer.peak_lr=nan"], "peak_lr=nan must be a finite number"),
    (["--workdir={empty}"], "empty.txt is a file, not a directory"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, capsys, args, match):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    argv = ["--experiment=tiny_test", f"--workdir={tmp_path / 'w'}"] + [a.format(empty=empty) for a in args]
    assert main_mod.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err), err


def test_aot_reports_memory_and_batch_divisibility_on_8_devices():
    out = _run_cli("--experiment=tiny_test", "--mode=aot", "--config.mesh.data=1", "--config.mesh.fsdp=8",
                   "--hbm_gb=1", devices=8)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'fsdp': 8" in out.stdout and "FITS in 1.0 GiB" in out.stdout
    fsdp_args = float(re.search(r"arguments ([\d.]+) GiB", out.stdout).group(1))
    tiny = _run_cli("--experiment=tiny_test", "--mode=aot", "--hbm_gb=0.0001", devices=8)  # data=-1 -> 8
    assert tiny.returncode == 0, tiny.stderr[-3000:]
    assert "DOES NOT FIT in 0.0 GiB" in tiny.stdout and "'data': 8" in tiny.stdout
    dp_args = float(re.search(r"arguments ([\d.]+) GiB", tiny.stdout).group(1))
    assert fsdp_args < dp_args / 3  # FSDP shards params + Adam state; DP replicates them
    bad = _run_cli("--experiment=tiny_test", "--mode=aot", "--config.batch_size=12", devices=8)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "batch_size=12" in bad.stderr and "data-parallel size 8" in bad.stderr


def test_launcher_dry_run_prints_valid_commands(capsys):
    argv = ["--tpu_name=gpt2-pod", "--zone=us-central2-b", "--accelerator=v4-32", "--experiment=gpt2_124m",
            "--workdir=gs://bucket/gpt2_124m", "--create", "--dry_run", "--config.total_steps=1000"]
    assert launch.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines[::2]] == ["# create", "# setup", "# train"]  # what each step does
    create, setup, run = (shlex.split(line) for line in lines[1::2])
    assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"] and "--accelerator-type=v4-32" in create
    for cmd in (setup, run):
        assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "gpt2-pod"]
        assert "--worker=all" in cmd and "--zone=us-central2-b" in cmd
    remote = shlex.split(next(a for a in run if a.startswith("--command="))[len("--command="):])
    train = remote[remote.index("-m") - 2:remote.index(">")]
    assert train[:4] == ["python3", "-u", "-m", "experiments.main"]
    # the remote command parses into the config it names: the v4-32 preset plus the override
    flags = dict(a[2:].split("=", 1) for a in train[4:] if not a.startswith("--config."))
    overrides = [a for a in train[4:] if a.startswith("--config.")]
    cfg = registry.get_config(flags["experiment"], flags["tpu"], overrides)
    assert flags["workdir"] == "gs://bucket/gpt2_124m" and cfg.total_steps == 1000
    assert math.prod((cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)) == 16


def test_launcher_runbook_steps_watch_preempt_and_resume_on_another_slice(capsys):
    """The runbook's later steps: watch worker 0, SIGTERM every worker's job, then train again on a
    slice of another size with the same workdir (its preset mesh, the same global batch)."""
    base = ["--zone=us-central2-b", "--experiment=gpt2_124m", "--workdir=gs://bucket/run", "--dry_run"]
    assert launch.main(["--tpu_name=a", "--accelerator=v4-32", "--steps=preempt,watch", *base]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines[::2]] == ["# watch", "# preempt"]  # in the runbook's order
    watch, preempt = (shlex.split(line) for line in lines[1::2])
    assert "--worker=0" in watch and "--command=tail -n 40 -F ~/train.log" in watch
    assert "--worker=all" in preempt and "--command=pkill -TERM -f 'experiments[.]main' || true" in preempt
    assert launch.main(["--tpu_name=b", "--accelerator=v5p-128", "--steps=create,setup,train", *base]) == 0
    run = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
    remote = shlex.split(next(a for a in run if a.startswith("--command="))[len("--command="):])
    flags = dict(a[2:].split("=", 1) for a in remote if a.startswith("--") and "=" in a)
    assert flags["workdir"] == "gs://bucket/run" and flags["tpu"] == "v5p-128"
    small, big = registry.get_config("gpt2_124m", "v4-32"), registry.get_config("gpt2_124m", "v5p-128")
    assert small.batch_size == big.batch_size  # so the resumed run reads the same global batches
    assert launch.main(["--tpu_name=a", "--accelerator=v4-32", "--steps=train,nap", *base]) == 2
    assert "unknown step(s) ['nap']" in capsys.readouterr().err


def test_launcher_rejects_local_workdir(capsys):
    argv = ["--tpu_name=x", "--zone=z", "--accelerator=v4-32", "--experiment=gpt2_124m", "--workdir=/tmp/x",
            "--dry_run"]
    assert launch.main(argv) == 2
    assert "must be a gs:// path" in capsys.readouterr().err


def test_nanogpt_shakespeare_char_recipes_resolve_and_lock():
    """nanoGPT's config/train_shakespeare_char.py and its README's CPU variant, field by field."""
    from gpt2_jax.train.config import TrainConfig
    want = {"shakespeare_char": dict(n_layer=6, n_head=6, n_embd=384, dropout=0.2, seq_len=256, batch_size=64,
                                     total_steps=5000, decay_steps=5000, eval_batches=200),
            "shakespeare_char_cpu": dict(n_layer=4, n_head=4, n_embd=128, dropout=0.0, seq_len=64, batch_size=12,
                                         total_steps=2000, decay_steps=2000, eval_batches=20)}
    for name, w in want.items():
        cfg = registry.get_config(name)
        with pytest.raises(AttributeError):
            cfg.data.block_size = 64
        tc = registry.train_config(name)
        assert isinstance(tc, TrainConfig)
        m, o, d = tc.model_config(66), tc.optimizer, tc.data
        got = dict(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, dropout=m.dropout, seq_len=tc.seq_len,
                   batch_size=tc.batch_size, total_steps=tc.total_steps, decay_steps=o.decay_steps,
                   eval_batches=tc.eval_batches)
        assert got == w, name
        assert (d.tokenizer, d.windows, d.val_fraction, d.source) == ("char", "random", 0.1, "tinyshakespeare")
        assert (o.peak_lr, o.peak_lr * o.min_lr_ratio, o.warmup_steps, o.b1, o.b2) == (1e-3, 1e-4, 100, 0.9, 0.99)
        assert (o.weight_decay, o.decay_embeddings, o.grad_clip) == (0.1, True, 1.0)
        assert (tc.eval_every, tc.eval_rows, tc.grad_accum_steps, m.n_positions) == (250, tc.batch_size, 1,
                                                                                      tc.seq_len)
    assert registry.train_config("shakespeare_char").model_config(66).num_params > 10_000_000
    with pytest.raises(ConfigError, match="data.tokenizer='char'.*set model.vocab_size"):
        from gpt2_jax.train import build
        build.vocab_size_without_data(registry.train_config("shakespeare_char"))
