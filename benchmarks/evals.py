"""The zero-shot suite (paper mode), gpt2_jax against a straightforward PyTorch eval, side by side:

    GPT2_JAX_DATA_DIR=../shared/data python -m benchmarks.evals [--limits lambada=40,cbt_cn=1]
        [--tasks lambada,wikitext2] [--size 124m|tiny] [--markdown BENCHMARKS.md] [--json out.json]

Every task with data here runs through the library's own `runner.run_task` twice: with gpt2_jax's
`Scorer` (shared-prefix packing, length buckets, LM head at scored positions) and with
`torch_ref.EvalScorer` (HF GPT2LMHeadModel on the same weights, each request whole at batch 1), so
reading, limits, request building and metrics are the same code and only the engine differs. The
metrics must agree (checked, and shown); forward tokens, wall times and their ratio are reported.
JAX runs each task twice on one Scorer: cold (compiles included) then warm (the timed one); torch
runs once after a one-request warm-up. Both sides run in this one process, one after the other,
torch with as many threads as cores. Weights are random (GPT-2 init, seed 0): timing and agreement
do not depend on them.

Projection to the full task: rolling-perplexity tasks scale the warm time by forward tokens (the
full file's windows are built, not run); the others by examples (full size / examples measured).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

from gpt2_jax.evals import lm_ppl, readers, runner, scoring

# Paper-mode size of each task, in `limit` units (run_eval's: passages, questions, lines, KB, turns).
FULL = {"lambada": 5153, "cbt_cn": 2000, "cbt_ne": 2000, "wikitext2": 4358, "wikitext103": 4358, "ptb": 3761,
        "enwik8": 5000, "text8": 5000, "wsc273": 273, "coqa": 7983, "cnn_dm": 11490, "wmt14_en_fr": 3003,
        "wmt14_fr_en": 3003, "nq": 3610}
UNITS = {"lambada": "passages", "cbt_cn": "questions", "cbt_ne": "questions", "wikitext2": "lines",
         "wikitext103": "lines", "ptb": "lines", "enwik8": "KB", "text8": "KB", "wsc273": "schemas",
         "coqa": "turns", "cnn_dm": "articles", "wmt14_en_fr": "sentences", "wmt14_fr_en": "sentences", "nq": "questions"}
LIMITS = {"lambada": 20, "cbt_cn": 1, "cbt_ne": 1, "wikitext2": 30, "wikitext103": 30, "ptb": 60,
          "enwik8": 20, "text8": 20, "wsc273": 20, "coqa": 4, "cnn_dm": 2, "wmt14_en_fr": 8, "wmt14_fr_en": 8,
          "nq": 20}
# The shipped excerpts stand in where the full official file is not in the data dir.
SAMPLES = {"cbt_cn": "cbt/samples/cbtest_CN_valid_2000ex.excerpt1.txt",
           "cbt_ne": "cbt/samples/cbtest_NE_valid_2000ex.excerpt1.txt",
           "coqa": "coqa/samples/coqa-dev-v1.0.excerpt1story.json"}
_SKIP = {"seconds", "n", "scored_tokens", "forward_tokens", "padding_fraction", "scored_tokens_per_sec",
         "forward_tokens_per_sec", "bpe_tokens", "words", "bytes"}
MODE = "paper"


def available(tasks, data_dir) -> tuple[dict[str, Any], dict[str, str]]:
    """{task: data file} of the tasks whose data is here (official file, else a shipped sample),
    and {task: why not} for the rest."""
    from gpt2_jax import paths
    from gpt2_jax.errors import UserError
    found, missing = {}, {}
    for t in tasks:
        try:
            found[t] = runner.data_paths([t], MODE, data_dir=data_dir)[t]
        except UserError as e:
            sample = paths.data_dir(data_dir) / SAMPLES[t] if t in SAMPLES else None
            if sample is not None and sample.is_file():
                found[t] = sample
            else:
                missing[t] = str(e).split(";")[0]
    return found, missing


def metrics_agree(a: dict, b: dict, rtol: float) -> tuple[bool, str]:
    """Whether every metric of the two sides agrees (numbers within rtol), and the first that does not."""
    for k in a:
        if k in _SKIP or k not in b or not isinstance(a[k], (int, float)):
            continue
        if not math.isclose(a[k], b[k], rel_tol=rtol, abs_tol=rtol):
            return False, f"{k}: {a[k]!r} vs {b[k]!r}"
    return True, ""


def full_forward_tokens(task: str, path, tok, cfg) -> int:
    """Tokens through the model for the whole file under the paper's sliding window (not run)."""
    if task in lm_ppl.CHAR_TASKS:
        text = readers.read_char_benchmark(task, path).decode("utf-8", errors="replace")
    else:
        text = readers.read_text(task, path)
    tokens = tok.encode(lm_ppl.PAPER_DETOK[task](text))
    reqs = scoring.rolling_requests(tokens, tok.eot_id, cfg.n_positions, max(1, cfg.n_positions // 2))
    return sum(len(s) - 1 for s, _ in reqs)


def run_side(task, path, limit, scorer, tok) -> tuple[dict, scoring.Stats, float]:
    before = scoring.Stats(**vars(scorer.stats))
    t0 = time.perf_counter()
    metrics, _ = runner.run_task(task, path, MODE, limit, scorer, tok, {})
    return metrics, scorer.stats.minus(before), time.perf_counter() - t0


def bench(size: str = "124m", tasks=None, limits: dict | None = None, data_dir=None, rtol: float = 1e-4,
          log=print) -> dict[str, Any]:
    """Both sides on every available task; returns {"tasks": {task: record}, "missing", "totals"}."""
    import jax
    import torch

    from benchmarks.torch_ref import EvalScorer
    from gpt2_jax.config import GPT2Config
    from gpt2_jax.model import init_params
    from gpt2_jax.tokenizer import GPT2_VOCAB_SUBDIR, Tokenizer
    from gpt2_jax import paths

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    cfg = (GPT2Config.from_name("gpt2") if size == "124m"
           else GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, attn_block_size=32))
    params = init_params(cfg, jax.random.key(0))
    tok = Tokenizer.from_dir(paths.data_dir(data_dir) / GPT2_VOCAB_SUBDIR)
    found, missing = available(tasks or runner.TASKS, data_dir)
    limits = {**LIMITS, **(limits or {})}
    jax_scorer = scoring.Scorer(params, cfg, batch_size=8, progress=False)
    torch_scorer = EvalScorer(params, cfg)
    torch_scorer.score([([1, 2, 3, 4], 2)])  # torch's first call allocates its pools
    torch_scorer.stats = scoring.Stats()
    out = {}
    for task, path in found.items():
        lim = limits[task]
        _, _, cold = run_side(task, path, lim, jax_scorer, tok)
        jm, js, warm = run_side(task, path, lim, jax_scorer, tok)
        tm, ts, tsec = run_side(task, path, lim, torch_scorer, tok)
        ok, why = metrics_agree(jm, tm, rtol)
        if task in runner.LM_TASKS or task in lm_ppl.CHAR_TASKS:
            full_fwd = full_forward_tokens(task, path, tok, cfg)
            measured = lim
            scale, how = full_fwd / max(js.forward_tokens, 1), f"x {full_fwd:,} forward tokens (full file)"
        else:
            measured = jm["n"]
            scale, how = FULL[task] / measured, f"x {FULL[task]:,} {UNITS[task]} / {measured} measured"
        rec = {"examples": measured, "units": UNITS[task], "full": FULL[task], "agree": ok, "disagreement": why,
               "jax": {"metrics": jm, "seconds": warm, "cold_seconds": cold, **js.metrics()},
               "torch": {"metrics": tm, "seconds": tsec, **ts.metrics()},
               "speedup": tsec / warm, "forward_ratio": ts.forward_tokens / max(js.forward_tokens, 1),
               "projected_min": {"jax": warm * scale / 60, "torch": tsec * scale / 60,
                                 "jax_compile_s": max(cold - warm, 0.0)}, "projection": how}
        out[task] = rec
        if log:
            log(f"  {task}: jax {warm:.2f}s (cold {cold:.2f}s), torch {tsec:.2f}s, {rec['speedup']:.2f}x; "
                f"forward tokens {js.forward_tokens:,} vs {ts.forward_tokens:,}; agree={ok} {why}")
    totals = {"jax_min": sum(r["projected_min"]["jax"] + r["projected_min"]["jax_compile_s"] / 60 for r in out.values()),
              "torch_min": sum(r["projected_min"]["torch"] for r in out.values())}
    return {"size": size, "tasks": out, "missing": missing, "totals": totals}


def table(res: dict) -> str:
    lines = ["| task | measured | full size | metric (jax / torch) | agree | forward tokens jax / torch | fwd ratio "
             "| padding | jax s (cold) | torch s | speed-up | scored tok/s jax / torch | projected full jax / torch min |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for task, r in res["tasks"].items():
        j, t = r["jax"], r["torch"]
        key = next(k for k in ("acc", "ppl", "bpb", "f1") if k in j["metrics"])
        lines.append(
            f"| {task} | {r['examples']} {r['units']} | {r['full']:,} | {key} {j['metrics'][key]:.4g} / "
            f"{t['metrics'][key]:.4g} | {'yes' if r['agree'] else '**no** ' + r['disagreement']} | "
            f"{j['forward_tokens']:,} / {t['forward_tokens']:,} | {r['forward_ratio']:.2f}x | "
            f"{j['padding_fraction']:.1%} | {j['seconds']:.2f} ({j['cold_seconds']:.1f}) | {t['seconds']:.2f} | "
            f"{r['speedup']:.2f}x | {j['scored_tokens_per_sec']:,.0f} / {t['scored_tokens_per_sec']:,.0f} | "
            f"{r['projected_min']['jax']:.1f} / {r['projected_min']['torch']:.1f} |")
    tot = res["totals"]
    lines.append(f"| **total (tasks with data here)** | | | | | | | | | | | | **{tot['jax_min']:.1f} / "
                 f"{tot['torch_min']:.1f}** |")
    if res["missing"]:
        lines += ["", "Not run (no data here): " + "; ".join(f"{t}" for t in res["missing"]) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("124m", "tiny"), default="124m")
    ap.add_argument("--tasks", default="", help="comma-separated subset of runner.TASKS (default: all with data)")
    ap.add_argument("--limits", default="", help="task=N,... overriding the default limits " + json.dumps(LIMITS))
    ap.add_argument("--markdown", default="", help="also write the table into this file between markers")
    ap.add_argument("--json", default="", help="also dump every record to this file")
    args = ap.parse_args(argv)
    limits = {k: int(v) for k, v in (kv.split("=") for kv in args.limits.split(",") if kv)}
    tasks = runner.parse_tasks(args.tasks) if args.tasks else None
    load0, t0 = os.getloadavg(), time.perf_counter()
    res = bench(args.size, tasks, limits, log=lambda s: print(s, file=sys.stderr, flush=True))
    load1 = os.getloadavg()
    from benchmarks.run import publish
    publish("benchmarks.evals", argv, f"GPT-2 {args.size} shape, random weights; load average (1/5/15 min) "
            f"{load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f} at start, {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} at "
            f"end; took {time.perf_counter() - t0:.0f} s.", table(res), res, args.markdown, args.json,
            indent=1, default=str)
    return 0 if all(r["agree"] for r in res["tasks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
