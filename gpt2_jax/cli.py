"""The `gpt2-jax` command line: one subcommand per library entry point (sample, convert, eval,
overlap, train-tokenizer, report), each a registered (add_arguments, run) pair.

`add_arguments(parser)` declares a subcommand's flags and `run(args)` does the work (heavy imports
inside `run`); only the chosen subcommand's flags are declared, so `gpt2-jax --help` stays fast.
`report_errors` (errors.report_errors) is the one error path of every entry point (this CLI, the
repo's experiments.main, `python -m gpt2_jax.harness`): a `UserError` becomes one line
`PROG: error: <message>` and exit status 2, as argparse errors do; a `TrainingError` (e.g. a
non-finite loss) one line and status 1; in a multi-process run the process then exits at once and
stops its peers (distributed.fail_fast). Commands registered with `distributed=True` (sample,
eval) take the multi-process flags of training and run SPMD on every process; only process 0
prints and writes.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Callable, NamedTuple, Sequence

from gpt2_jax import distributed, errors, host
from gpt2_jax.errors import UserError

PROG = "gpt2-jax"


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    distributed: bool = False


COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, add_arguments: Callable, run: Callable, *, distributed: bool = False) -> None:
    """Make `gpt2-jax NAME` parse its flags with `add_arguments` and call `run(args)`; with
    `distributed`, it also takes the multi-process flags and starts jax.distributed first."""
    COMMANDS[name] = Command(help, add_arguments, run, distributed)


def _distributed_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("multi-process (as in training; detected by itself on a Cloud TPU slice)")
    g.add_argument("--coordinator-address", default="", metavar="HOST:PORT", help="process 0's address")
    g.add_argument("--num-processes", type=int, default=0, metavar="N")
    g.add_argument("--process-id", type=int, default=-1, metavar="I")
    g.add_argument("--heartbeat-timeout", type=int, default=distributed.HEARTBEAT_TIMEOUT, metavar="S",
                   help="seconds of silence after which a process counts as dead: the others name it and exit 1")


def _primary() -> bool:
    import jax
    return jax.process_index() == 0


# ------------------------------------------------------------------------------------ sample
def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="HF dir, OpenAI dir, training workdir, or a released name (gpt2 ... gpt2-xl)")
    p.add_argument("--prompt", default="", help="text to continue (empty: start from <|endoftext|>)")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="tokens to add (default: 64, or fewer if the model's context is shorter)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="0 = greedy")
    p.add_argument("--top-k", type=int, default=40, metavar="K",
                   help="sample among the K most likely tokens (0 = all; 40 as in the GPT-2 paper)")
    p.add_argument("--top-p", type=float, default=None, metavar="P", help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--vocab-dir", default=None, metavar="DIR",
                   help="tokenizer: dir with encoder.json + vocab.bpe, a sentencepiece .model or a char vocab .json "
                        "(default: the checkpoint dir's, a training run's own, else $GPT2_JAX_DATA_DIR/gpt2_vocab)")


def _tokenizer_for(checkpoint: str, vocab: str | None):
    from etils import epath

    from gpt2_jax.tokenizer import Tokenizer
    if vocab is None:
        d = epath.Path(checkpoint).expanduser()  # a local dir or a gs:// training workdir
        if (d / "encoder.json").is_file() and (d / "vocab.bpe").is_file():
            vocab = str(d)
        elif d.is_dir():
            from gpt2_jax import workdir
            if workdir.is_workdir(d):  # the tokenizer the run was trained with
                vocab = workdir.tokenizer_spec(d)
    return Tokenizer.load(vocab)


def _sample(args: argparse.Namespace) -> int:
    import jax

    from gpt2_jax.generate import generate
    from gpt2_jax.interop import load_checkpoint
    from gpt2_jax.sharding import data_parallel

    tok = _tokenizer_for(args.checkpoint, args.vocab_dir)
    params, cfg = load_checkpoint(args.checkpoint)
    prompt = tok.encode(args.prompt) if args.prompt else [tok.eot_id]
    n_new = args.max_new_tokens
    if n_new is None:
        n_new = max(1, min(64, cfg.n_positions - len(prompt)))
    layout = data_parallel() if jax.process_count() > 1 else None  # SPMD over every process's devices
    out = generate(params, cfg, prompt, max_new_tokens=n_new, temperature=args.temperature,
                   top_k=args.top_k or None, top_p=args.top_p, rng=args.seed, eos_id=tok.eot_id, layout=layout)
    new = out[len(prompt):]
    if new and new[-1] == tok.eot_id:
        new = new[:-1]
    if _primary():
        print(args.prompt + tok.decode(new))
    return 0


# ----------------------------------------------------------------------------------- convert
def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="PATH",
                   help="HF dir, OpenAI dir, training workdir, or a released name (gpt2 ... gpt2-xl)")
    p.add_argument("--to", dest="target", required=True, metavar="DIR", help="output directory")
    p.add_argument("--format", choices=("hf", "openai"), default="hf",
                   help="hf: config.json + model.safetensors; openai: hparams.json + TF model.ckpt")
    p.add_argument("--vocab-dir", default=None, metavar="DIR",
                   help="openai format: copy encoder.json + vocab.bpe from here (default: from the source dir)")


def _convert(args: argparse.Namespace) -> int:
    from gpt2_jax.interop import load_checkpoint, save_hf, save_openai
    from gpt2_jax.model import count_params

    params, cfg = load_checkpoint(args.source)
    if args.format == "hf":
        out = save_hf(params, cfg, args.target)
    else:
        vocab = args.vocab_dir
        src = pathlib.Path(args.source).expanduser()
        if vocab is None and (src / "encoder.json").is_file() and (src / "vocab.bpe").is_file():
            vocab = src
        out = save_openai(params, cfg, args.target, vocab_dir=vocab)
    print(f"wrote {out} ({args.format}, {count_params(params):,} parameters)")
    return 0


register("sample", "continue a prompt with a trained or released model", _sample_arguments, _sample,
         distributed=True)
register("convert", "convert a checkpoint to HF safetensors or OpenAI TF format", _convert_arguments, _convert)


# -------------------------------------------------------------------------------------- eval
def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="HF dir, OpenAI dir, training workdir, or a released name (gpt2 ... gpt2-xl)")
    p.add_argument("--tasks", default=None,
                   help="comma-separated: lambada,cbt_cn,cbt_ne,wikitext2,wikitext103,ptb,coqa,enwik8,text8,"
                        "wsc273,cnn_dm,wmt14_en_fr,wmt14_fr_en,nq or all (default: lambada,wikitext2,ptb "
                        "unless --harness-tasks is given)")
    p.add_argument("--harness-tasks", default=None, metavar="T1,T2",
                   help="lm-evaluation-harness tasks (needs the [harness] extra); results go to "
                        "OUTPUT_STEM_harness.json")
    p.add_argument("--harness-include-path", default=None, metavar="DIR",
                   help="directory of local lm-eval task YAMLs (e.g. dataset_path: json for offline runs)")
    p.add_argument("--harness-fewshot", type=int, default=None, metavar="K",
                   help="few-shot examples per harness task (default: each task's own)")
    p.add_argument("--mode", choices=("paper", "harness"), default="paper",
                   help="paper: the GPT-2 paper's protocols; harness: lm-eval-harness definitions")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="official test files (default $GPT2_JAX_DATA_DIR)")
    p.add_argument("--output", default="results.json", metavar="FILE",
                   help="results JSON; a Markdown table and PNG chart are written beside it")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N passages/questions/CoQA turns; lines for wikitext/ptb; KB for enwik8/text8")
    p.add_argument("--batch-size", type=int, default=8, metavar="B")
    p.add_argument("--context", type=int, default=None, metavar="T",
                   help="paper-mode perplexity window (default: the model's context)")
    p.add_argument("--stride", type=int, default=None, metavar="S",
                   help="paper-mode perplexity stride (default: context // 2)")
    p.add_argument("--cbt-split", choices=("valid", "test"), default=None,
                   help="CBT split (default: valid in paper mode as the paper reports, test in harness mode)")
    p.add_argument("--file", action="append", default=[], metavar="TASK=PATH",
                   help="read TASK from PATH instead of the data dir (repeatable), e.g. coqa=story.json")
    p.add_argument("--vocab-dir", default=None, metavar="DIR", help="tokenizer (default: the checkpoint's)")


def _eval(args: argparse.Namespace) -> int:
    from gpt2_jax.evals.runner import run_eval

    files = {}
    for item in args.file:
        task, sep, path = item.partition("=")
        if not sep:
            raise UserError(f"--file {item!r} must look like TASK=PATH, e.g. --file coqa=coqa-dev-v1.0.json.")
        files[task] = path
    from etils import epath

    tok = _tokenizer_for(args.checkpoint, args.vocab_dir) if (args.vocab_dir or epath.Path(
        args.checkpoint).expanduser().is_dir()) else None
    tasks = args.tasks if args.tasks is not None or args.harness_tasks else "lambada,wikitext2,ptb"
    harness_out = pathlib.Path(args.output).with_name(pathlib.Path(args.output).stem + "_harness.json")
    if args.harness_tasks:  # fail on unknown harness tasks before any evaluation runs
        from gpt2_jax import harness
        harness.resolve_tasks(args.harness_tasks, args.harness_include_path)
    if tasks:
        run_eval(args.checkpoint, tasks, args.mode, args.data_dir, args.output, args.limit,
                 files=files, batch_size=args.batch_size, tokenizer=tok, context=args.context,
                 stride=args.stride, cbt_split=args.cbt_split)
        if _primary():
            print(f"wrote {args.output}")
    if args.harness_tasks:
        results = harness.evaluate(args.checkpoint, args.harness_tasks, include_path=args.harness_include_path,
                                   limit=args.limit, num_fewshot=args.harness_fewshot, output=harness_out,
                                   batch_size=args.batch_size, tokenizer=tok, data_dir=args.data_dir)
        if _primary():
            print(harness.table(results))
            print(f"wrote {harness_out}")
    return 0


# ----------------------------------------------------------------------------------- overlap
def _overlap_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, nargs="+", metavar="CORPUS", help="training text files")
    p.add_argument("--tasks", default="lambada,wikitext2,wikitext103,ptb", help="test sets to check")
    p.add_argument("--data-dir", default=None, metavar="DIR")
    p.add_argument("--output", default=None, metavar="FILE", help="also write the result as JSON")
    p.add_argument("--n", type=int, default=8, help="n-gram length (paper: 8)")


def _overlap(args: argparse.Namespace) -> int:
    from gpt2_jax.evals.overlap import overlap_report

    result = overlap_report(args.train, args.tasks, args.data_dir, args.output, n=args.n)
    width = max(map(len, result), default=4)
    print(f"{'task':<{width}}  % of test {args.n}-grams in the training corpus")
    for task, stats in result.items():
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}
        print(f"{task:<{width}}  {shown}")
    return 0


# --------------------------------------------------------------------------- train-tokenizer
def _train_tokenizer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, nargs="+", metavar="FILE", help="training text files")
    p.add_argument("--model-prefix", required=True, metavar="PREFIX", help="writes PREFIX.model and PREFIX.vocab")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--model-type", choices=("bpe", "unigram"), default="bpe")


def _train_tokenizer(args: argparse.Namespace) -> int:
    from gpt2_jax.tokenizer import Tokenizer

    pathlib.Path(args.model_prefix).expanduser().parent.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.train_sentencepiece(args.input, args.model_prefix, vocab_size=args.vocab_size,
                                        model_type=args.model_type)
    print(f"wrote {args.model_prefix}.model ({tok.vocab_size} pieces; use it with "
          f"--config.data.tokenizer={args.model_prefix}.model)")
    return 0


# ------------------------------------------------------------------------------------ report
def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("workdir", metavar="WORKDIR", help="a training workdir")


def _report(args: argparse.Namespace) -> int:
    from etils import epath

    from gpt2_jax.train.metrics import METRICS_FILE
    from gpt2_jax.train.report import write_report

    workdir = epath.Path(args.workdir).expanduser()
    if not (workdir / METRICS_FILE).exists():
        raise UserError(f"{workdir} has no {METRICS_FILE}: it is not a training workdir (train with "
                        "`python -m experiments.main --workdir=DIR` or gpt2_jax.train.train(config, DIR)).")
    print(f"wrote {write_report(workdir)}")
    return 0


register("eval", "zero-shot evaluation suite (paper or harness mode)", _eval_arguments, _eval, distributed=True)
register("overlap", "8-gram overlap of test sets with a training corpus (paper section 4)",
         _overlap_arguments, _overlap)
register("train-tokenizer", "train a sentencepiece BPE on a corpus", _train_tokenizer_arguments, _train_tokenizer)
register("report", "regenerate WORKDIR/report.md and its plots", _report_arguments, _report)


# -------------------------------------------------------------------------------------- main
def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, flags are declared for that subcommand alone."""
    parser = argparse.ArgumentParser(prog=PROG, description="GPT-2 in JAX: sample, convert, train, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sp = sub.add_parser(name, help=cmd.help, description=cmd.help)
        if only is None or name == only:
            cmd.add_arguments(sp)
            if cmd.distributed:
                _distributed_arguments(sp)
    return parser


def report_errors(run: Callable[[], int | None], prog: str = PROG) -> int:
    """errors.report_errors with this command's name; in a multi-process run an error exits this
    process at once and stops its peers (distributed.fail_fast), instead of waiting at the
    shutdown barrier."""
    return errors.report_errors(run, prog, on_error=distributed.fail_fast)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `gpt2-jax` with `argv` (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = build_parser(chosen if chosen in COMMANDS else None).parse_args(argv)
    except SystemExit as e:  # argparse already printed usage and the error (status 2) or help (0)
        return int(e.code or 0)

    def run() -> int | None:
        cmd = COMMANDS[args.command]
        if cmd.distributed:  # before anything asks JAX for its backend
            distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                                   heartbeat_timeout=args.heartbeat_timeout)
        host.keep_freed_memory()  # CPU: no page faults re-touching each step's large temporaries
        return cmd.run(args)
    return report_errors(run)


if __name__ == "__main__":
    sys.exit(main())
