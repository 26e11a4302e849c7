"""`run_eval`: the GPT-2 paper's zero-shot suite (Table 3, CoQA, and §3.4-3.8: WSC273,
CNN/DailyMail, WMT-14 En<->Fr, Natural Questions) on one model, in `paper` or `harness` mode; the
function behind `gpt2-jax eval`.

results.json maps each task to its metrics: `acc`, `f1`, `em` in percent, `ppl` (paper: per
original token; LAMBADA: of the final word), `word_ppl` / `byte_ppl` (harness), `bpb` (bits per
byte, per character for text8), `rouge1`/`rouge2`/`rougeLsum` F1 and `bleu` (percent), `n`
(examples, original tokens or bytes scored), `seconds`, plus task-specific extras. Beside it go
results.md (a table next to the paper's numbers), results.png and the generation tasks'
predictions (CoQA in the official format).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
from etils import epath

from gpt2_jax import paths
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError
from gpt2_jax.evals import cbt, cnn_dm, coqa, formats, lambada, lm_ppl, nq, readers, textgen, wmt, wsc
from gpt2_jax.evals.scoring import Scorer
from gpt2_jax.sharding import Layout

TASKS = ("lambada", "cbt_cn", "cbt_ne", "wikitext2", "wikitext103", "ptb", "coqa", "enwik8", "text8",
         "wsc273", "cnn_dm", "wmt14_en_fr", "wmt14_fr_en", "nq")
MODES = ("paper", "harness")
LM_TASKS = (  # word-level rolling perplexity (enwik8/text8: lm_ppl.CHAR_TASKS)
    "wikitext2", "wikitext103", "ptb")


def parse_tasks(tasks: str | Sequence[str] | None) -> list[str]:
    """Task names from a list or a comma-separated string ("all" or None: every task)."""
    if tasks is None or tasks == "all":
        return list(TASKS)
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise InputError(f"unknown eval task(s) {unknown or tasks!r}; choose from {', '.join(TASKS)} "
                         "(comma-separated), or 'all'.")
    return list(dict.fromkeys(names))


def _load_model(checkpoint_or_params: Any, cfg: GPT2Config | None) -> tuple[Any, GPT2Config]:
    if isinstance(checkpoint_or_params, (str, os.PathLike)):
        from gpt2_jax.interop import load_checkpoint
        return load_checkpoint(checkpoint_or_params)
    if isinstance(checkpoint_or_params, tuple) and len(checkpoint_or_params) == 2:
        return checkpoint_or_params
    if cfg is None:
        raise InputError("run_eval got parameters without a config; pass cfg=GPT2Config(...), a "
                         "(params, cfg) tuple, or a checkpoint path.")
    return checkpoint_or_params, cfg


def checkpoint_tokenizer(tokenizer: Any, checkpoint: Any, data_dir: Any = None):
    """The tokenizer to evaluate `checkpoint` with: `tokenizer` if given (a Tokenizer or a
    Tokenizer.load spec), else the checkpoint dir's encoder.json + vocab.bpe, else a training
    workdir's own, else GPT-2's BPE from the data dir."""
    from gpt2_jax.tokenizer import GPT2_VOCAB_SUBDIR, Tokenizer
    if tokenizer is not None:
        return Tokenizer.load(tokenizer)
    if isinstance(checkpoint, (str, os.PathLike)):
        d = pathlib.Path(checkpoint).expanduser()
        if (d / "encoder.json").is_file() and (d / "vocab.bpe").is_file():
            return Tokenizer.from_dir(d)
        if d.is_dir():
            from gpt2_jax import workdir
            if workdir.is_workdir(d):
                return Tokenizer.load(workdir.tokenizer_spec(d))
    return Tokenizer.from_dir(paths.data_dir(data_dir) / GPT2_VOCAB_SUBDIR)


def _split(task: str, mode: str, cbt_split: str | None) -> str:
    if task.startswith("cbt"):
        return cbt_split or cbt.DEFAULT_SPLIT[mode]
    return "dev" if task in ("coqa", "nq") else "test"


def _data_path(task: str, split: str, path: Any, data_dir: Any) -> pathlib.Path:
    if task == "nq" and path is not None and pathlib.Path(path).expanduser().is_dir():
        return pathlib.Path(path).expanduser()  # a directory of the official nq-dev-*.jsonl.gz shards
    return readers.resolve(task, split, path, data_dir)


def _cut_lines(text: str, limit: int | None) -> str:
    if limit is None:
        return text
    return "".join(text.splitlines(keepends=True)[:limit])


def data_paths(names: Sequence[str], mode: str, files: dict[str, Any] | None = None, data_dir: Any = None,
               cbt_split: str | None = None) -> dict[str, pathlib.Path]:
    """The data file of each task (`files` overrides the data dir's official names)."""
    files = files or {}
    return {t: _data_path(t, _split(t, mode, cbt_split), files.get(t), data_dir) for t in names}


def run_task(task: str, path: pathlib.Path, mode: str, limit: int | None, scorer: Scorer, tok,
             opts: dict[str, Any]) -> tuple[dict[str, Any], dict | None]:
    """One task's (metrics, predictions or None) with `scorer` (anything with Scorer's score /
    greedy / cfg, e.g. the benchmark's PyTorch reference); opts: context, stride, cbt_split,
    coqa_max_new_tokens (None = the defaults)."""
    if task == "lambada":
        texts = readers.read_lambada(path)[:limit]
        return lambada.evaluate(scorer, tok, texts, mode), None
    if task.startswith("cbt"):
        questions = readers.read_cbt(path, task[-2:].upper(), _split(task, mode, opts.get("cbt_split")))[:limit]
        return cbt.evaluate(scorer, tok, questions, mode), None
    if task in LM_TASKS:
        text = _cut_lines(readers.read_text(task, path), limit)
        return lm_ppl.evaluate(scorer, tok, task, text, mode, opts.get("context"), opts.get("stride")), None
    if task in lm_ppl.CHAR_TASKS:
        raw = readers.read_char_benchmark(task, path)
        raw = raw[:limit * 1000] if limit is not None else raw
        text = raw.decode("utf-8", errors="replace")
        return lm_ppl.evaluate(scorer, tok, task, text, mode, opts.get("context"), opts.get("stride"),
                               n_bytes=len(raw)), None
    if task == "wsc273":
        return wsc.evaluate(scorer, tok, formats.read_wsc273(path)[:limit], mode), None
    if task == "cnn_dm":
        return cnn_dm.evaluate(scorer, tok, formats.read_cnn_dm(path, limit=limit), mode)
    if task.startswith("wmt14"):
        return wmt.evaluate(scorer, tok, formats.read_wmt14(task[-5:], path), mode, limit=limit)
    if task == "nq":
        return nq.evaluate(scorer, tok, formats.read_nq(path), mode, limit=limit)
    stories = readers.read_coqa(path)
    if limit is not None:  # the first `limit` turns
        kept, left = [], limit
        for s in stories:
            if left <= 0:
                break
            k = min(left, len(s.questions))
            kept.append(dataclasses.replace(s, questions=s.questions[:k], turn_ids=s.turn_ids[:k],
                                            references=s.references[:k]))
            left -= k
        stories = kept
    max_new = opts.get("coqa_max_new_tokens") or min(coqa.DEFAULT_MAX_NEW[mode], scorer.cfg.n_positions // 2)
    return coqa.evaluate(scorer, tok, stories, mode, max_new)


def run_eval(checkpoint_or_params: Any, tasks: str | Sequence[str] | None = None, mode: str = "paper",
             data_dir: str | os.PathLike | None = None, output: str | os.PathLike | None = None,
             limit: int | None = None, *, cfg: GPT2Config | None = None, tokenizer: Any = None,
             files: dict[str, str | os.PathLike] | None = None, batch_size: int = 8,
             context: int | None = None, stride: int | None = None, cbt_split: str | None = None,
             coqa_max_new_tokens: int | None = None, report: bool = True,
             log: Callable[[str], None] | None = print, layout: Layout | None = None,
             progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate a model on `tasks` and return {task: metrics}; with `output`, write results.json
    there plus the Markdown table, PNG chart and CoQA predictions beside it (a local or gs:// path).

    checkpoint_or_params: a checkpoint path or released name (see interop.load_checkpoint), a
        (params, cfg) tuple, or params with `cfg=`.
    tasks: names from TASKS as a list or comma-separated string; None or "all" = every task.
    mode: "paper" (GPT-2 Table 3 definitions) or "harness" (lm-eval-harness definitions).
    data_dir: where the official files live (default $GPT2_JAX_DATA_DIR); `files` maps a task to an
        explicit file instead (e.g. the CBT/CoQA samples; for cnn_dm the url list with the story
        archives beside it, for wmt14_* the source .sgm with its reference beside it).
    limit: only the first N passages / questions / CoQA turns / schemas / stories / sentence pairs /
        lines (WikiText, PTB) / kilobytes (enwik8, text8).
    context, stride: sliding window of paper-mode perplexity (default n_positions, n_positions // 2);
        harness mode always uses disjoint n_positions windows.
    layout: the mesh to evaluate on (default: every device of every process, data-parallel). Every
        process must call run_eval with the same arguments; only process 0 writes `output`.
    progress: a progress bar per task (process 0, stderr).
    Each task's metrics also carry its throughput (scored / forward tokens and tokens per second).
    """
    if mode not in MODES:
        raise InputError(f"unknown eval mode {mode!r}; choose 'paper' or 'harness'.")
    names = parse_tasks(tasks)
    files = dict(files or {})
    unknown = sorted(set(files) - set(TASKS))
    if unknown:
        raise InputError(f"files= names unknown task(s) {unknown}; known: {', '.join(TASKS)}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r} must be a positive integer (sequences scored at once).")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit={limit!r} must be a positive integer (or None for everything).")
    # Resolve every data file before loading the model, so a missing file fails fast.
    paths_ = data_paths(names, mode, files, data_dir, cbt_split)
    textgen.require_metrics(names)
    params, cfg = _load_model(checkpoint_or_params, cfg)
    tok = checkpoint_tokenizer(tokenizer, checkpoint_or_params, data_dir)
    scorer = Scorer(params, cfg, batch_size=batch_size, layout=layout, progress=progress)
    opts = {"context": context, "stride": stride, "cbt_split": cbt_split,
            "coqa_max_new_tokens": coqa_max_new_tokens}
    results: dict[str, dict[str, Any]] = {}
    predictions: dict[str, Any] = {}
    for task in names:
        t0, before = time.perf_counter(), dataclasses.replace(scorer.stats)
        metrics, preds = run_task(task, paths_[task], mode, limit, scorer, tok, opts)
        metrics["seconds"] = round(time.perf_counter() - t0, 3)
        metrics.update(scorer.stats.minus(before).metrics())
        results[task] = metrics
        if preds is not None:
            predictions[task] = preds
        if log:
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if k != "domains"}
            log(f"[eval {mode}] {task}: {shown}")
    if output is not None and jax.process_index() == 0:
        out = epath.Path(output).expanduser()  # local or gs://...
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        for task, preds in predictions.items():
            where = out.with_name(f"{out.stem}_{task}_predictions.json")
            if task == "coqa":
                from gpt2_jax.evals.coqa_metric import write_predictions
                write_predictions(preds, where)
            else:
                where.write_text(json.dumps(preds, indent=1, ensure_ascii=False) + "\n")
        if report:
            from gpt2_jax.evals import report as report_mod
            report_mod.write_report(results, cfg, mode, out.with_suffix(".md"), out.with_suffix(".png"))
    return results
