"""One clear error for every bad input: a table of user mistakes across `gpt2-jax`, `python -m
experiments.main` and the library API. Each row asserts the exit status (2 for user mistakes), key
words of the message (the cause and the fix), no Python traceback, and, where a checkpoint is
involved, that what was already saved is still there, byte for byte, and loadable afterwards.
Disk full while checkpointing is simulated with RLIMIT_FSIZE in a subprocess (writes past the
limit fail with EFBIG, as they would with ENOSPC on a full disk)."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import traceback
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpt2_jax.errors import CheckpointError, ConfigError, InputError, TokenizerError, UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = ["console=false", "eval_every=0", "log_every=3", "checkpoint_every=3", "total_steps=6",
         "data.tokenizer_vocab_size=0"]  # + data.tokenizer and data.cache_dir shared by copies of the run
LONG_PROMPT = "to be or not to be, that is the question " * 30
NEWEST, PREVIOUS = 6, 3  # checkpoints of the fixture run


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    entry: str                      # "gpt2-jax" | "experiments.main" | "api"
    args: Any                       # argv with {placeholders}, or f(ctx) for "api"
    patterns: tuple[str, ...]       # regexes (case-insensitive) the error message must match
    rc: int = 2                     # CLI exit status / for "api": the exception class
    keeps: str = ""                 # ctx key of a workdir whose checkpoints must survive unchanged
    process: bool = False           # run as a real subprocess (what a user's shell sees)
    env: tuple[tuple[str, str], ...] = ()
    max_len: int = 0                # the error line stays short (no dumps of internal specs)


def _words(n_lines: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    return "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(n_lines)) + "\n"


def _snapshot(workdir: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Every file under WORKDIR/checkpoints with its size and mtime."""
    root = workdir / "checkpoints"
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_loadable(workdir: pathlib.Path, step: int) -> None:
    from gpt2_jax import workdir as workdir_lib
    params, cfg = workdir_lib.load_params_from_workdir(workdir, step=step)
    assert cfg.n_embd == 64
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, data_dir):
    """A 6-step tiny_test workdir (checkpoints 3 and 6), its HF export, and broken copies of both."""
    from experiments import registry
    from gpt2_jax import interop
    from gpt2_jax.train import loop

    from gpt2_jax.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("bad_inputs")
    workdir = root / "run"
    # one tokenizer and token cache outside the workdir, so copies of the run reuse them
    Tokenizer.train_sentencepiece([str(data_dir / "train_corpora" / "tinyshakespeare" / "input.txt")],
                                  str(root / "sp"), vocab_size=512, num_threads=1)
    train = [*TRAIN, f"data.tokenizer={root / 'sp.model'}", f"data.cache_dir={root / 'token_cache'}"]
    loop.train(registry.train_config("tiny_test", overrides=train), str(workdir))
    c: dict[str, Any] = {"tmp": str(root), "workdir": str(workdir), "long_prompt": LONG_PROMPT, "train": train}

    hf = root / "hf"
    interop.save_hf(*interop.load_checkpoint(workdir), hf)
    c["hf"] = str(hf)
    for name in ("trunc_hf", "wrong_hf", "badcfg_hf"):
        shutil.copytree(hf, root / name)
        c[name] = str(root / name)
    weights = root / "trunc_hf" / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    cfg = json.loads((hf / "config.json").read_text())
    (root / "wrong_hf" / "config.json").write_text(json.dumps(dict(cfg, n_embd=128)))
    (root / "badcfg_hf" / "config.json").write_text('{"n_embd": 64,\n')

    vocab = data_dir / "gpt2_vocab"
    for name, keep, cut in (("bad_encoder", "vocab.bpe", "encoder.json"), ("bad_bpe", "encoder.json", "vocab.bpe")):
        (root / name).mkdir()
        shutil.copy(vocab / keep, root / name / keep)
        (root / name / cut).write_bytes((vocab / cut).read_bytes()[:1000])
        c[name] = str(root / name)
    c["char_vocab"] = str(root / "char_vocab.json")  # Tiny Shakespeare's characters, as data.tokenizer="char"
    Tokenizer.build_char([(data_dir / "train_corpora" / "tinyshakespeare" / "input.txt").read_text()], c["char_vocab"])
    (root / "bad.model").write_bytes(b"this is not a sentencepiece model")
    c["bad_model"] = str(root / "bad.model")

    # training workdirs with a truncated newest checkpoint, a corrupt one's metadata, none at all
    for name in ("trunc_run", "badmeta_run", "resume_run"):
        shutil.copytree(workdir, root / name)
        c[name] = str(root / name)
    for f in (root / "trunc_run" / "checkpoints" / str(NEWEST) / "params").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            with open(f, "r+b") as fh:
                fh.truncate(10)
    (root / "badmeta_run" / "checkpoints" / str(NEWEST) / "meta" / "metadata").write_text("{bad")
    (root / "no_ckpt_run" / "checkpoints").mkdir(parents=True)
    c["no_ckpt_run"] = str(root / "no_ckpt_run")

    files = {
        "empty.txt": b"",
        "ok_corpus.txt": _words(300).encode(),
        "non_utf8.txt": _words(47).encode() + b"caf\xe9 au lait\n" + _words(250, seed=1).encode(),
        "bad.jsonl": b'{"text": "a passage that ends in a word"}\n{"text": broken\n',
        "empty.jsonl": b"",
        "no_text.jsonl": b'{"passage": "a b c"}\n',
        "non_utf8.jsonl": b'{"text": "one two"}\n{"text": "caf\xe9"}\n',
        "bad_coqa.json": b'{"version": "1.0", "data": [{"story": "Once",',
        "a_file": b"not a directory\n",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
        c[name.replace(".", "_")] = str(root / name)
    (root / "not_a_run").mkdir()
    c["not_a_run"] = str(root / "not_a_run")
    c["devices"] = jax.device_count()
    c["snapshots"] = {k: _snapshot(pathlib.Path(c[k])) for k in ("workdir", "trunc_run", "badmeta_run",
                                                                 "resume_run")}
    return c


# ------------------------------------------------------------------------------------ the table
def _tiny_model():
    from gpt2_jax.config import GPT2Config
    from gpt2_jax.model import init_params
    cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=32, vocab_size=64)
    return init_params(cfg, jax.random.key(0)), cfg


def _api_generate_too_long(c):
    import gpt2_jax as g
    params, cfg = _tiny_model()
    g.generate(params, cfg, list(range(30)), max_new_tokens=8)


def _api_forward_too_long(c):
    import gpt2_jax as g
    params, cfg = _tiny_model()
    g.forward(params, jnp.zeros((1, 40), jnp.int32), cfg)


def _api_run_eval_without_cfg(c):
    from gpt2_jax.evals.runner import run_eval
    params, _ = _tiny_model()
    run_eval(params, "lambada", limit=2)


def _api_load_truncated(c):
    import gpt2_jax as g
    g.load_checkpoint(c["trunc_hf"])


def _api_unknown_model(c):
    from gpt2_jax.config import GPT2Config
    GPT2Config.from_name("gpt5")


def _api_decode_unknown_id(c):
    from gpt2_jax.tokenizer import Tokenizer
    Tokenizer.from_dir(pathlib.Path(os.environ["GPT2_JAX_DATA_DIR"]) / "gpt2_vocab").decode([15496, 999_999])


def _api_eval_bad_limit(c):
    from gpt2_jax.evals.runner import run_eval
    run_eval(_tiny_model(), "lambada", limit=-1)


def _api_override_without_value(c):
    from experiments import registry
    registry.get_config("tiny_test", overrides=["optimizer.peak_lr"])


S = ["sample", "--checkpoint"]
E = ["eval", "--checkpoint", "{workdir}", "--tasks"]
OUT = ["--limit", "2", "--output", "{tmp}/eval/results.json"]
M = ["--experiment=tiny_test"]
ROWS = [
    # ------------------------------------------------------------ gpt2-jax: flags
    Row("unknown-subcommand", "gpt2-jax", ["smaple"], (r"invalid choice: 'smaple'", r"choose from 'sample'")),
    Row("misspelt-flag", "gpt2-jax", [*S, "{hf}", "--temprature", "0.5"], (r"unrecognized arguments: --temprature",)),
    Row("missing-required-flag", "gpt2-jax", ["sample", "--prompt", "hi"], (r"required: --checkpoint",)),
    Row("top-p-out-of-range", "gpt2-jax", [*S, "{workdir}", "--top-p", "1.5"], (r"top_p=1\.5", r"\(0, 1\]")),
    Row("negative-temperature", "gpt2-jax", [*S, "{workdir}", "--temperature", "-1"],
        (r"temperature=-1", r">= 0", r"greedy")),
    Row("prompt-longer-than-context", "gpt2-jax", [*S, "{workdir}", "--prompt", "{long_prompt}",
                                                   "--max-new-tokens", "5"],
        (r"prompt of \d+ tokens", r"context of n_positions=64", r"shorten the prompt to at most 59 tokens")),
    Row("too-many-new-tokens", "gpt2-jax", [*S, "{workdir}", "--max-new-tokens", "500"],
        (r"max_new_tokens=500", r"n_positions=64", r"lower max_new_tokens to at most 63")),
    # ------------------------------------------------------------ gpt2-jax: checkpoints
    Row("checkpoint-not-found", "gpt2-jax", [*S, "{tmp}/no_such_run"],
        (r"no_such_run", r"does not exist", r"HF dir", r"released model name")),
    Row("truncated-safetensors", "gpt2-jax", ["convert", "--from", "{trunc_hf}", "--to", "{tmp}/out1"],
        (r"model\.safetensors", r"truncated or corrupt", r"re-download|re-save")),
    Row("wrong-shape-weights", "gpt2-jax", ["convert", "--from", "{wrong_hf}", "--to", "{tmp}/out2"],
        (r"wte", r"shape \(512, 64\)", r"expects \(512, 128\)", r"config that was saved with these weights")),
    Row("corrupt-hf-config", "gpt2-jax", ["convert", "--from", "{badcfg_hf}", "--to", "{tmp}/out3"],
        (r"config\.json", r"re-save or re-download")),
    Row("convert-onto-a-file", "gpt2-jax", ["convert", "--from", "{hf}", "--to", "{a_file}"],
        (r"a_file", r"directory")),
    Row("workdir-without-checkpoints", "gpt2-jax", [*S, "{no_ckpt_run}"],
        (r"no complete checkpoint", r"checkpoint_every")),
    Row("truncated-workdir-checkpoint", "gpt2-jax", [*S, "{trunc_run}", "--max-new-tokens", "2"],
        (rf"checkpoints/{NEWEST}\b", r"truncated|corrupt|unreadable", rf"(step |checkpoints/){PREVIOUS}\b"),
        keeps="trunc_run", process=True, max_len=400),
    Row("corrupt-workdir-metadata", "gpt2-jax", [*S, "{badmeta_run}", "--max-new-tokens", "2"],
        (rf"checkpoints/{NEWEST}\b", r"meta", r"corrupt|not valid JSON", rf"(step |checkpoints/){PREVIOUS}\b"),
        keeps="badmeta_run"),
    # ------------------------------------------------------------ gpt2-jax: vocabularies
    Row("tokenizer-does-not-match-model", "gpt2-jax", [*S, "{hf}", "--prompt", "Hello there"],
        (r"token id \d+", r"outside the model's vocabulary \[0, 512\)", r"tokenizer")),
    Row("missing-gpt2-vocab", "gpt2-jax", [*S, "{hf}", "--prompt", "Hello"],
        (r"GPT2_JAX_DATA_DIR", r"encoder\.json"), env=(("GPT2_JAX_DATA_DIR", "{tmp}/no_data_here"),)),
    Row("vocab-dir-not-found", "gpt2-jax", [*S, "{hf}", "--vocab-dir", "{tmp}/no_vocab"],
        (r"no_vocab", r"encoder\.json \+ vocab\.bpe", r"sentencepiece")),
    Row("truncated-encoder-json", "gpt2-jax", [*S, "{hf}", "--vocab-dir", "{bad_encoder}"],
        (r"encoder\.json", r"corrupt", r"GPT2_JAX_DATA_DIR")),
    Row("truncated-vocab-bpe", "gpt2-jax", [*S, "{hf}", "--vocab-dir", "{bad_bpe}"],
        (r"vocab\.bpe:\d+", r"corrupt", r"GPT2_JAX_DATA_DIR")),
    Row("corrupt-sentencepiece-model", "gpt2-jax", [*S, "{hf}", "--vocab-dir", "{bad_model}"],
        (r"bad\.model", r"not a sentencepiece model", r"\.model file written by sentencepiece")),
    Row("char-tokenizer-unseen-character", "gpt2-jax", [*S, "{hf}", "--vocab-dir", "{char_vocab}", "--prompt",
                                                        "Wherefore art thou, Roméo?"],
        (r"character 'é' \(U\+00E9\) at position 23", r"not in the char vocabulary \(65 characters",
         r"replace that character|build the vocabulary from a corpus that contains it")),
    # ------------------------------------------------------------ gpt2-jax: eval files
    Row("unknown-eval-task", "gpt2-jax", [*E, "lambda", *OUT], (r"unknown eval task\(s\) \['lambda'\]", r"lambada")),
    Row("eval-limit-zero", "gpt2-jax", [*E, "lambada", "--limit", "0"], (r"limit=0", r"positive integer")),
    Row("file-flag-without-task", "gpt2-jax", [*E, "lambada", "--file", "{bad_jsonl}", *OUT], (r"TASK=PATH",)),
    Row("eval-data-dir-missing", "gpt2-jax", [*E, "lambada", "--data-dir", "{tmp}/no_data", *OUT],
        (r"data file not found", r"lambada_test\.jsonl", r"--data-dir|GPT2_JAX_DATA_DIR")),
    Row("malformed-lambada-jsonl", "gpt2-jax", [*E, "lambada", "--file", "lambada={bad_jsonl}", *OUT],
        (r"bad\.jsonl:2", r"malformed JSON", r'one JSON object like \{"text"')),
    Row("lambada-without-text-field", "gpt2-jax", [*E, "lambada", "--file", "lambada={no_text_jsonl}", *OUT],
        (r"no_text\.jsonl:1", r"'text'")),
    Row("empty-lambada-file", "gpt2-jax", [*E, "lambada", "--file", "lambada={empty_jsonl}", *OUT],
        (r"empty\.jsonl", r"no passages")),
    Row("non-utf8-lambada-file", "gpt2-jax", [*E, "lambada", "--file", "lambada={non_utf8_jsonl}", *OUT],
        (r"non_utf8\.jsonl:2", r"UTF-8", r"re-download")),
    Row("truncated-coqa-json", "gpt2-jax", [*E, "coqa", "--file", "coqa={bad_coqa_json}", *OUT],
        (r"bad_coqa\.json", r"JSON", r"expected|re-download")),
    Row("cnn-dm-data-missing", "gpt2-jax", [*E, "cnn_dm", "--data-dir", "{tmp}/no_data", *OUT],
        (r"data file not found", r"cnn_dm/all_test\.txt", r"abisee/cnn-dailymail")),
    Row("malformed-wsc273-jsonl", "gpt2-jax", [*E, "wsc273", "--file", "wsc273={bad_jsonl}", *OUT],
        (r"bad\.jsonl:1", r'"context_options": \[two strings\]')),
    Row("wmt-source-without-reference", "gpt2-jax", [*E, "wmt14_en_fr", "--file", "wmt14_en_fr={bad_jsonl}", *OUT],
        (r"no reference file beside .*bad\.jsonl", r"newstest2014-fren-ref\.fr\.sgm")),
    Row("nq-without-questions", "gpt2-jax", [*E, "nq", "--file", "nq={no_text_jsonl}", *OUT],
        (r"no_text\.jsonl:1", r"NQ-Open record")),
    # ------------------------------------------------------------ gpt2-jax: tokenizer training, report
    Row("train-tokenizer-empty-corpus", "gpt2-jax", ["train-tokenizer", "--input", "{empty_txt}",
                                                     "--model-prefix", "{tmp}/sp/a", "--vocab-size", "300"],
        (r"empty", r"files that contain text")),
    Row("train-tokenizer-non-utf8-corpus", "gpt2-jax", ["train-tokenizer", "--input", "{non_utf8_txt}",
                                                        "--model-prefix", "{tmp}/sp/b", "--vocab-size", "300"],
        (r"non_utf8\.txt", r"UTF-8", r"re-encode|iconv")),
    Row("report-on-a-non-workdir", "gpt2-jax", ["report", "{not_a_run}"],
        (r"no metrics\.jsonl", r"not a training workdir")),
    Row("train-misspelt-config-key", "experiments.main", ["--experiment=tiny_test", "--workdir={tmp}/t1",
                                                          "--config.total_step=5"],
        (r"unknown config key 'total_step'", r"known: .*total_steps")),
    # ------------------------------------------------------------ experiments.main
    Row("unknown-experiment", "experiments.main", ["--experiment=tiny", "--workdir={tmp}/m0"],
        (r"unknown experiment 'tiny'", r"tiny_shakespeare", r"--list")),
    Row("bad-mode", "experiments.main", [*M, "--mode=eval"], (r"--mode", r"invalid choice: 'eval'")),
    Row("override-without-config-prefix", "experiments.main", [*M, "--workdir={tmp}/m1", "--total_steps=5"],
        (r"'--total_steps=5'", r"--config\.KEY=VALUE")),
    Row("unknown-config-key", "experiments.main", [*M, "--workdir={tmp}/m2", "--config.optimizer.lr=1e-3"],
        (r"unknown config key 'optimizer\.lr'", r"known: .*peak_lr")),
    Row("bad-config-value", "experiments.main", [*M, "--workdir={tmp}/m3", "--config.batch_size=eight"],
        (r"batch_size", r"'eight'", r"\(int\)")),
    Row("config-group-as-value", "experiments.main", [*M, "--workdir={tmp}/m4", "--config.model=gpt2"],
        (r"'model' is a group", r"model\.\w+=")),
    Row("mesh-larger-than-devices", "experiments.main", [*M, "--workdir={tmp}/m5", "--config.mesh.data=3"],
        (r"= 3 but <devices> devices", r"product is <devices>", r"-1")),
    Row("heads-do-not-divide-width", "experiments.main", [*M, "--workdir={tmp}/m6", "--config.model.n_head=5"],
        (r"n_embd=64 is not divisible by n_head=5", r"choose n_head")),
    Row("batch-not-divisible-by-accumulation", "experiments.main",
        [*M, "--workdir={tmp}/m7", "--config.grad_accum_steps=3"],
        (r"batch_size=8", r"grad_accum_steps=3", r"multiple of 3")),
    Row("zero-sequence-length", "experiments.main", [*M, "--workdir={tmp}/m8", "--config.seq_len=0"],
        (r"seq_len=0", r"positive integer")),
    Row("nan-learning-rate", "experiments.main", [*M, "--workdir={tmp}/m9", "--config.optimizer.peak_lr=nan"],
        (r"peak_lr=nan", r"finite|> 0|positive")),
    Row("empty-corpus", "experiments.main", [*M, "--workdir={tmp}/m10", "--config.data.source={empty_txt}"],
        (r"empty\.txt", r"empty corpus", r"file with text")),
    Row("non-utf8-corpus", "experiments.main", [*M, "--workdir={tmp}/m11", "--config.data.source={non_utf8_txt}"],
        (r"non_utf8\.txt:48", r"not UTF-8", r"iconv")),
    Row("missing-corpus", "experiments.main", [*M, "--workdir={tmp}/m12", "--config.data.source={tmp}/nope.txt"],
        (r"nope\.txt", r"not found", r"check the path")),
    Row("coordinator-without-process-count", "experiments.main", [*M, "--workdir={tmp}/m13",
                                                                  "--coordinator_address=127.0.0.1:1"],
        (r"coordinator address 127\.0\.0\.1:1 given", r"also pass the number of processes")),
    Row("process-count-without-coordinator", "gpt2-jax", [*S, "{workdir}", "--num-processes=2"],
        (r"num_processes=2, process_id=-1 given without a coordinator address", r"HOST:PORT of process 0")),
    Row("workdir-is-a-file", "experiments.main", [*M, "--workdir={a_file}", "--config.total_steps=2"],
        (r"a_file", r"not a directory|is a file", r"workdir")),
    Row("resume-with-a-different-model", "experiments.main",
        [*M, "--workdir={resume_run}", "<train>", "--config.model.n_embd=128", "--config.total_steps=8"],
        (r"n_embd", r"checkpoint", r"workdir"), keeps="resume_run"),
    Row("init-from-missing-path", "experiments.main",
        [*M, "--workdir={tmp}/m14", "<train>", "--config.init_from={tmp}/no_such_ckpt"],
        (r"init_from='[^']*no_such_ckpt'", r"does not exist", r"HF dir", r"released model name")),
    Row("init-from-checkpoint-of-another-shape", "experiments.main",
        [*M, "--workdir={tmp}/m15", "<train>", "--config.init_from={hf}", "--config.model.n_embd=128"],
        (r"init_from='[^']*hf'", r"tensor wte has shape \(512, 64\)", r"expects \(512, 128\)",
         r"n_embd=64", r"set model\.\*")),
    # ------------------------------------------------------------ library API
    Row("api-unknown-model-name", "api", _api_unknown_model, (r"'gpt5'", r"known: gpt2"), rc=ConfigError),
    Row("api-prompt-longer-than-context", "api", _api_generate_too_long,
        (r"prompt of 30 tokens", r"n_positions=32", r"shorten the prompt"), rc=InputError),
    Row("api-forward-longer-than-context", "api", _api_forward_too_long, (r"\b40\b", r"n_positions=32"),
        rc=InputError),
    Row("api-decode-unknown-id", "api", _api_decode_unknown_id,
        (r"id 999999 at position 1", r"outside the vocabulary"), rc=TokenizerError),
    Row("api-eval-params-without-config", "api", _api_run_eval_without_cfg, (r"cfg=",), rc=InputError),
    Row("api-eval-negative-limit", "api", _api_eval_bad_limit, (r"limit=-1", r"positive integer"), rc=InputError),
    Row("api-override-without-value", "api", _api_override_without_value, (r"KEY=VALUE",), rc=ConfigError),
    Row("api-load-truncated-safetensors", "api", _api_load_truncated, (r"truncated or corrupt",), rc=CheckpointError),
]


def _fill(value, c):
    return value.format(**c) if isinstance(value, str) else value


def _call_in_process(row: Row, argv: list[str]) -> tuple[int, str]:
    """The entry point's main(argv) as the process would run it: (status, stderr text). An exception
    that escapes main becomes status 1 and its traceback, as Python would print it."""
    if row.entry == "gpt2-jax":
        from gpt2_jax.cli import main
    else:
        from experiments.main import main
    try:
        return int(main(argv) or 0), ""
    except SystemExit as e:  # argparse inside experiments.main
        return int(e.code or 0), ""
    except Exception:  # noqa: BLE001 - reported like an uncaught exception
        return 1, traceback.format_exc()


def _call_process(row: Row, argv: list[str]) -> tuple[int, str]:
    module = "gpt2_jax.cli" if row.entry == "gpt2-jax" else "experiments.main"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", module, *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_gets_one_clear_error(row, ctx, capfd, monkeypatch):
    for key, value in row.env:
        monkeypatch.setenv(key, _fill(value, ctx))
    if row.entry == "api":
        with pytest.raises(UserError) as info:
            row.args(ctx)
        assert isinstance(info.value, row.rc), f"{type(info.value).__name__}: {info.value}"
        message = str(info.value)
    else:
        argv = [x for a in row.args for x in ([f"--config.{o}" for o in ctx["train"]] if a == "<train>"
                                              else [_fill(a, ctx)])]
        capfd.readouterr()
        status, extra = (_call_process if row.process else _call_in_process)(row, argv)
        err = capfd.readouterr().err + extra
        assert "Traceback" not in err, err[-4000:]
        assert status == row.rc, err[-4000:]
        lines = [line for line in err.splitlines() if re.search(r"(^|: )error: ", line)]
        assert len(lines) == 1, err[-4000:]  # one line names the problem
        message = lines[0]
        if row.max_len:
            assert len(message) <= row.max_len, message
    for pattern in row.patterns:
        pattern = pattern.replace("<devices>", str(ctx["devices"]))
        assert re.search(pattern, message, re.IGNORECASE), f"{pattern!r} not in: {message}"
    if row.keeps:
        workdir = pathlib.Path(ctx[row.keeps])
        assert _snapshot(workdir) == ctx["snapshots"][row.keeps], "saved checkpoints changed"
        assert not (workdir / "checkpoints_corrupt").exists()
        _assert_loadable(workdir, PREVIOUS)


def test_rows_cover_both_entry_points_and_the_api():
    kinds = {r.entry for r in ROWS}
    assert kinds == {"gpt2-jax", "experiments.main", "api"} and len(ROWS) >= 20
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_the_shared_run_is_untouched_by_every_row(ctx):
    """Sampling, evaluating and converting read checkpoints; none may change or move them."""
    workdir = pathlib.Path(ctx["workdir"])
    assert _snapshot(workdir) == ctx["snapshots"]["workdir"]
    _assert_loadable(workdir, NEWEST)
    _assert_loadable(workdir, PREVIOUS)


def test_disk_full_while_checkpointing_keeps_the_saved_checkpoints(ctx, tmp_path):
    """A rerun that may write only 200 kB per file (a checkpoint file is ~0.3-0.7 MB) fails at its
    first save with a clear line; checkpoints 3 and 6 survive and a rerun with room resumes from 6."""
    workdir = tmp_path / "run"
    shutil.copytree(ctx["workdir"], workdir)
    before = _snapshot(workdir)
    args = ["--experiment=tiny_test", "--mode=train", f"--workdir={workdir}",
            *[f"--config.{o}" for o in ctx["train"] if not o.startswith("total_steps")], "--config.total_steps=9"]
    argv = [sys.executable, "-m", "experiments.main", *args]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    # The child limits its own file size before it runs experiments.main (a preexec_fn would fork
    # this multithreaded JAX process).
    small_files = ("import resource, runpy; resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); "
                   "runpy.run_module('experiments.main', run_name='__main__', alter_sys=True)")
    full = subprocess.run([sys.executable, "-c", small_files, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert full.returncode in (1, 2), full.stderr[-3000:]
    lines = [line for line in full.stderr.splitlines() if re.search(r"(^|: )error: |training stopped: ", line)]
    assert len(lines) == 1, full.stderr[-4000:]
    assert re.search(r"checkpoint", lines[0], re.I) and re.search(r"\b9\b", lines[0])
    assert re.search(r"space|disk|too large", lines[0], re.I)
    assert re.search(rf"step {NEWEST}\b", lines[0]) and re.search(r"rerun|resume", lines[0], re.I)
    assert {k: v for k, v in _snapshot(workdir).items() if k in before} == before
    _assert_loadable(workdir, NEWEST)

    again = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout.split("summary ", 1)[1].splitlines()[0])
    assert summary["start_step"] == NEWEST and summary["final_step"] == 9
