"""experiments/configs/nanogpt.py: nanoGPT's shakespeare_char_cpu by its documented command.

The full 2000 iterations (nanoGPT: val loss ~1.88; here 1.8919, BENCHMARKS.md) take about 4 minutes
on this shared 2-core machine, too long for CI, so this runs the same command for the first 500 of
them. The schedule is the full run's (decay over optimizer.decay_steps=2000, not total_steps), so
these are that run's first 500 steps; it measured val loss 2.4479 at step 250 and 2.2921 at 500."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_shakespeare_char_cpu_first_500_steps_learn_characters(tmp_path, data_dir):
    workdir = tmp_path / "scc"
    cmd = [sys.executable, "-m", "experiments.main", "--experiment=shakespeare_char_cpu", f"--workdir={workdir}",
           "--mode=train", "--config.total_steps=500", "--config.console=false"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPT2_JAX_DATA_DIR=str(data_dir), JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval_loss"] for r in records if "eval_loss" in r}
    assert sorted(evals) == [250, 500]
    # ln(66) = 4.19 is a uniform guess; the characters' unigram entropy is ~3.3 nats. Below 2.40 at
    # step 500 the model uses context (measured 2.29); a misaligned target, a wrong vocabulary or
    # a broken schedule stays far above it.
    assert evals[500] < 2.40 and evals[500] < evals[250] - 0.05, evals
    vocab = json.loads((workdir / "tokenizer" / "char_vocab.json").read_text())
    text = (data_dir / "train_corpora" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    assert vocab["chars"] == "".join(sorted(set(text)))
    config = json.loads((workdir / "config.json").read_text())
    assert (config["data"]["windows"], config["data"]["val_fraction"], config["optimizer"]["decay_steps"]) == (
        "random", 0.1, 2000)
