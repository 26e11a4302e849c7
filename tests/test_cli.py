"""gpt2_jax.cli: `gpt2-jax sample` and `convert` on a tiny checkpoint, and user mistakes as one line
`gpt2-jax: error: ...` with exit status 2."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gpt2_jax import cli, interop, model, workdir
from gpt2_jax.config import GPT2Config
from gpt2_jax.generate import generate
from gpt2_jax.tokenizer import Tokenizer

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir):
    """A 2-layer model with the real GPT-2 vocabulary, saved as an HF dir."""
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64)
    params = jax.tree.map(lambda x: x + 0.1 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32),
                          model.init_params(cfg, jax.random.key(0)))
    hf_dir = interop.save_hf(params, cfg, tmp_path_factory.mktemp("ckpt") / "hf")
    return cfg, params, hf_dir, Tokenizer.from_dir(data_dir / "gpt2_vocab")


def test_sample_greedy_prints_the_library_continuation(tiny, capsys):
    cfg, params, hf_dir, tok = tiny
    rc = cli.main(["sample", "--checkpoint", str(hf_dir), "--prompt", PROMPT, "--max-new-tokens", "12",
                   "--temperature", "0"])
    out = capsys.readouterr().out
    ids = tok.encode(PROMPT)
    new = generate(params, cfg, ids, max_new_tokens=12, eos_id=tok.eot_id)[len(ids):]
    assert rc == 0 and out == PROMPT + tok.decode([t for t in new if t != tok.eot_id]) + "\n"
    assert len(out) > len(PROMPT) + 5


def test_sample_seed_controls_sampling(tiny, capsys):
    _, _, hf_dir, _ = tiny
    args = ["sample", "--checkpoint", str(hf_dir), "--prompt", PROMPT, "--max-new-tokens", "16", "--top-p", "0.95"]
    texts = []
    for seed in ("1", "1", "2"):
        assert cli.main(args + ["--seed", seed]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] != texts[2]


def test_convert_to_openai_and_back(tiny, tmp_path, capsys):
    cfg, params, hf_dir, _ = tiny
    assert cli.main(["convert", "--from", str(hf_dir), "--to", str(tmp_path / "oa"), "--format", "openai"]) == 0
    assert f"{cfg.num_params:,} parameters" in capsys.readouterr().out
    assert (tmp_path / "oa" / "hparams.json").is_file() and (tmp_path / "oa" / "model.ckpt.index").is_file()
    assert cli.main(["convert", "--from", str(tmp_path / "oa"), "--to", str(tmp_path / "hf2")]) == 0
    back, cfg2 = interop.load_checkpoint(tmp_path / "hf2")
    assert cfg2 == cfg
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_user_errors_are_one_line_and_exit_2(tiny, tmp_path, capsys):
    _, _, hf_dir, _ = tiny
    cases = [
        (["sample", "--checkpoint", str(tmp_path / "missing"), "--prompt", "x"], "is neither an HF dir"),
        (["sample", "--checkpoint", str(hf_dir), "--prompt", PROMPT, "--max-new-tokens", "100"],
         "exceeds the model's context of n_positions=64"),
        (["sample", "--checkpoint", str(hf_dir), "--top-p", "2"], "top_p=2.0"),
        (["convert", "--from", "gpt9", "--to", str(tmp_path / "out")], "nor a released model name"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("gpt2-jax: error: ") and message in err and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert cli.main(["sample", "--prompt", "x"]) == 2  # argparse: --checkpoint is required
    assert "--checkpoint" in capsys.readouterr().err
    assert cli.main(["no-such-command"]) == 2


def test_console_entry_point_process(tmp_path):
    """`python -m gpt2_jax.cli` (what the gpt2-jax script runs): exit 2 and one line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "gpt2_jax.cli", "sample", "--checkpoint", str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpt2-jax: error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_registered_subcommand_runs(monkeypatch, capsys):
    """Other modules add subcommands by registering (add_arguments, run)."""
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    cli.register("echo", "print a word", lambda p: p.add_argument("--word", required=True),
                 lambda args: print(args.word) or 3)
    assert cli.main(["echo", "--word", "hi"]) == 3
    assert capsys.readouterr().out == "hi\n"
    assert cli.main(["--help"]) == 0
    assert "echo" in capsys.readouterr().out


def test_sample_from_training_workdir_uses_its_tokenizer(tiny, tmp_path, monkeypatch, capsys, data_dir):
    """A workdir loads through gpt2_jax.workdir, with the tokenizer the run recorded."""
    cfg, params, _, tok = tiny
    monkeypatch.setattr(workdir, "is_workdir", lambda d: str(d) == str(tmp_path))
    monkeypatch.setattr(workdir, "tokenizer_spec", lambda d: str(data_dir / "gpt2_vocab"))
    monkeypatch.setattr(workdir, "load_for_inference", lambda d, **kw: (params, cfg))
    monkeypatch.setenv("GPT2_JAX_DATA_DIR", str(tmp_path / "no-vocab-here"))  # so the default would fail
    assert cli.main(["sample", "--checkpoint", str(tmp_path), "--prompt", PROMPT, "--max-new-tokens", "12",
                     "--temperature", "0"]) == 0
    ids = tok.encode(PROMPT)
    new = generate(params, cfg, ids, max_new_tokens=12, eos_id=tok.eot_id)[len(ids):]
    assert capsys.readouterr().out == PROMPT + tok.decode([t for t in new if t != tok.eot_id]) + "\n"


def test_eval_and_sample_start_jax_distributed_before_anything_asks_for_the_backend(tiny, monkeypatch, capsys):
    """sample and eval take training's multi-process flags and pass them on first (host's
    allocator setting asks JAX for its backend, which must come after jax.distributed)."""
    from gpt2_jax import distributed, host
    calls = []
    monkeypatch.setattr(distributed, "initialize", lambda *a, **k: calls.append(("initialize", a, k)) or False)
    monkeypatch.setattr(host, "keep_freed_memory", lambda: calls.append(("keep_freed_memory",)) or True)
    hf_dir = tiny[2]
    assert cli.main(["sample", "--checkpoint", str(hf_dir), "--max-new-tokens", "2", "--coordinator-address",
                     "10.0.0.1:1234", "--num-processes", "1", "--process-id", "0", "--heartbeat-timeout", "50"]) == 0
    assert calls[0] == ("initialize", ("10.0.0.1:1234", 1, 0), {"heartbeat_timeout": 50})
    assert calls[1] == ("keep_freed_memory",)
    calls.clear()
    assert cli.main(["convert", "--from", str(hf_dir), "--to", str(hf_dir.parent / "copy")]) == 0
    assert calls == [("keep_freed_memory",)]  # a one-process command: no jax.distributed
