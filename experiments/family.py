"""GPT-2 in miniature (issue #12 item 5): train a family of four sizes for the same number of tokens
on the corpus here, score each zero-shot, and write WORKDIR/report.md with a Table-3-shaped table
(tasks as rows, sizes as columns) and a Figure-1-style plot (metric against non-embedding
parameters, log x).

  python -m experiments.family                    the full variant (<= 60 min on 2 idle cores)
  python -m experiments.family --ci               the CI variant (~3 min; tests/test_family.py)
  python -m experiments.family --variant medium   the full sizes on a quarter of the tokens
  --workdir DIR (default runs/family_VARIANT)     --list: the variants and their sizes

Rerunning the same command resumes: a size whose results are in WORKDIR/SIZE/family_result.json is
not trained or scored again. Every process of a multi-process run (--coordinator_address ...) runs
every jitted computation (training, held-out loss, evals); process 0 alone writes files."""
from __future__ import annotations

import argparse
import glob
import json
import pathlib
import sys
import time
from typing import Any, Callable

from experiments.configs import family as family_cfg

PROG = "python -m experiments.family"
RESULT = "family_result.json"
TOKENIZER_DIR = "tokenizer"


def corpus_files(variant: family_cfg.Variant, data_dir: str | None = None) -> list[pathlib.Path]:
    """The variant's training files; DataError if none, or if Tiny Shakespeare slipped in."""
    from gpt2_jax import paths
    from gpt2_jax.errors import DataError
    pattern = str(paths.data_dir(data_dir) / variant.corpus)
    files = sorted(pathlib.Path(p) for p in glob.glob(pattern))
    if not files:
        raise DataError(f"no training files match {pattern}; set $GPT2_JAX_DATA_DIR (or --data-dir) to the "
                        "directory holding train_corpora/brown and train_corpora/cbt_train_books.")
    leaked = [f for f in files if "tinyshakespeare" in f.parts]
    if leaked:
        raise DataError(f"the family's corpus must not include Tiny Shakespeare, but {pattern} matched {leaked[0]}.")
    return files


def train_tokenizer(variant: family_cfg.Variant, files: list[pathlib.Path], workdir: pathlib.Path,
                    log: Callable[[str], None]) -> str:
    """The family's sentencepiece BPE, trained once on the corpus by process 0 (the others wait)."""
    import jax

    from gpt2_jax.distributed import sync
    from gpt2_jax.tokenizer import Tokenizer
    path = workdir / TOKENIZER_DIR / f"sp_bpe_{variant.tokenizer_vocab_size}.model"
    if jax.process_index() == 0 and not path.exists():
        t0 = time.perf_counter()
        prefix = path.with_suffix("")
        # one thread and no sampling: the same pieces on every machine
        Tokenizer.train_sentencepiece([str(f) for f in files], f"{prefix}.tmp", vocab_size=variant.tokenizer_vocab_size,
                                      num_threads=1)
        pathlib.Path(f"{prefix}.tmp.model").rename(path)
        pathlib.Path(f"{prefix}.tmp.vocab").rename(prefix.with_suffix(".vocab"))
        log(f"[family] tokenizer: {variant.tokenizer_vocab_size}-piece BPE on {len(files)} files "
            f"({time.perf_counter() - t0:.1f} s) -> {path}")
    sync("family_tokenizer")
    return str(path)


def measure_overlap(files: list[pathlib.Path], workdir: pathlib.Path, data_dir: str | None,
                    log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """8-gram overlap of the corpus with each eval set (what `gpt2-jax overlap` computes), cached in
    WORKDIR/overlap.json. Host-side Python only, so process 0 alone computes it."""
    from gpt2_jax.evals.overlap import overlap_report
    out = workdir / "overlap.json"
    if out.exists():
        return json.loads(out.read_text())
    t0 = time.perf_counter()
    result = overlap_report([str(f) for f in files], list(family_cfg.OVERLAP_TASKS), data_dir, out)
    log(f"[family] 8-gram overlap ({time.perf_counter() - t0:.1f} s): "
        + ", ".join(f"{t} {r['percent']:.3f}%" for t, r in result.items()))
    return result


def _flag_from_process_0(flag: bool) -> bool:
    """Process 0's decision on every process, so all of them skip or run the same steps."""
    from gpt2_jax.distributed import from_process_0
    return bool(from_process_0(1.0 if flag else 0.0)[0])


def run_size(size: family_cfg.Size, variant: family_cfg.Variant, tokenizer: str, workdir: pathlib.Path,
             data_dir: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Train one size (resuming), take its held-out loss, score it zero-shot; its results dict."""
    import jax

    from experiments import registry
    from gpt2_jax import workdir as workdir_lib
    from gpt2_jax.evals import runner
    from gpt2_jax.train import loop

    size_dir = workdir / size.name
    done = size_dir / RESULT
    if _flag_from_process_0(jax.process_index() == 0 and done.exists()):
        log(f"[family] {size.name}: results already in {done}; skipping")
        return json.loads(done.read_text()) if jax.process_index() == 0 else {}
    config = family_cfg.get_config(size.name, variant.name, tokenizer=tokenizer, cache_dir=str(workdir / "token_cache"))
    config.name = f"family_{variant.name}_{size.name}"
    if data_dir:
        config.data.data_dir = data_dir
    train_config, job = registry.split(config)
    log(f"[family] {size.name}: training n_layer={size.n_layer} n_embd={size.n_embd} "
        f"({size.non_embedding_params:,} non-embedding params) for {variant.tokens:,} tokens")
    t0 = time.perf_counter()
    summary = loop.train(train_config, str(size_dir))
    train_sec = time.perf_counter() - t0
    log(f"[family] {size.name}: trained in {train_sec:.0f} s, held-out loss {summary['final_eval_loss']:.4f}")
    model = workdir_lib.load_params_from_workdir(size_dir)
    results: dict[str, Any] = {}
    t1 = time.perf_counter()
    for mode, tasks in (("paper", family_cfg.PAPER_TASKS), ("harness", family_cfg.HARNESS_TASKS)):
        got = runner.run_eval(model, list(tasks), mode=mode, data_dir=data_dir, limit=variant.eval_limit,
                              tokenizer=tokenizer, report=False, progress=False,
                              log=lambda line, s=size.name: log(f"[family] {s}: {line}"))
        results.update({f"{t}_{mode}": m for t, m in got.items()})
    eval_sec = time.perf_counter() - t1
    record = {"size": size.name, "n_layer": size.n_layer, "n_embd": size.n_embd, "n_head": size.n_head,
              "peak_lr": size.peak_lr, "non_embedding_params": size.non_embedding_params,
              "num_params": int(summary["num_params"]), "tokens": variant.tokens,
              "held_out_loss": float(summary["final_eval_loss"]), "train_loss": float(summary["final_loss"]),
              "tokens_per_sec": float(summary["tokens_per_sec"]), "train_sec": round(train_sec, 1),
              "eval_sec": round(eval_sec, 1), "evals": results}
    if jax.process_index() == 0:
        done.write_text(json.dumps(record, indent=2, default=float) + "\n")
    log(f"[family] {size.name}: evaluated in {eval_sec:.0f} s")
    return record


def _print(line: str) -> None:
    print(line, flush=True)  # progress shows up at once in a redirected log too


def run(variant_name: str = "full", workdir: str | pathlib.Path | None = None, *, data_dir: str | None = None,
        log: Callable[[str], None] = _print) -> dict[str, Any]:
    """The whole family: tokenizer, overlap, every size trained and scored, report.md + figure.
    Returns {"variant", "sizes": [per-size records], "overlap", "report", "figure", "seconds"}."""
    import jax

    from experiments import family_report
    variant = family_cfg.get_variant(variant_name)
    workdir = pathlib.Path(workdir or f"runs/family_{variant.name}")
    primary = jax.process_index() == 0
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = corpus_files(variant, data_dir)
    log(f"[family] variant {variant.name}: {len(variant.sizes)} sizes x {variant.tokens:,} tokens on "
        f"{len(files)} files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) in {workdir}")
    tokenizer = train_tokenizer(variant, files, workdir, log)
    overlap = measure_overlap(files, workdir, data_dir, log) if primary else {}
    records = [run_size(s, variant, tokenizer, workdir, data_dir, log) for s in variant.sizes]
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"variant": variant.name, "sizes": records, "overlap": overlap, "seconds": round(seconds, 1)}
    if not primary:
        return out
    (workdir / "results.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    out["report"], out["figure"] = family_report.write(workdir, variant, records, overlap, seconds, files)
    log(f"[family] report: {out['report']} ({seconds:.0f} s in all)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="full", help=f"one of {', '.join(family_cfg.VARIANTS)} (default full)")
    p.add_argument("--ci", action="store_true", help="the CI variant (= --variant ci)")
    p.add_argument("--workdir", help="default runs/family_VARIANT")
    p.add_argument("--data-dir", default=None, help="default $GPT2_JAX_DATA_DIR")
    p.add_argument("--list", action="store_true", help="list the variants and their sizes")
    p.add_argument("--coordinator_address", default="")
    p.add_argument("--num_processes", type=int, default=0)
    p.add_argument("--process_id", type=int, default=-1)
    args = p.parse_args(argv)
    from gpt2_jax.cli import report_errors
    return report_errors(lambda: _main(args), prog=PROG)


def _main(args: argparse.Namespace) -> int:
    if args.list:
        for v in family_cfg.VARIANTS.values():
            sizes = ", ".join(f"{s.name} {s.n_layer}x{s.n_embd} ({s.non_embedding_params:,})" for s in v.sizes)
            print(f"{v.name:<7} {v.tokens:,} tokens per size; {sizes}\n        {v.description}")
        return 0
    variant = "ci" if args.ci else args.variant
    family_cfg.get_variant(variant)  # a bad name stops here, before JAX starts
    from gpt2_jax import distributed, host
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    host.keep_freed_memory()
    run(variant, args.workdir, data_dir=args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
