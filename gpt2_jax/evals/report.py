"""results.json -> a Markdown table beside the paper's Table 3 row for the matching model size, and
a PNG chart (one panel per metric: ours vs the paper)."""
from __future__ import annotations

import os
import pathlib
from typing import Any

from gpt2_jax.config import GPT2Config
from gpt2_jax.evals import paper


def _ours(results: dict[str, dict[str, Any]], task: str, key: str) -> float | None:
    m = results.get(task)
    if m is None:
        return None
    if key == "ppl" and "ppl" not in m:
        key = "word_ppl"  # harness-mode perplexities
    v = m.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def rows(results: dict[str, dict[str, Any]], cfg: GPT2Config) -> tuple[str, bool, list[tuple]]:
    """(paper size, exact match?, [(column title, task, ours, paper, lower is better)]) for run tasks."""
    size, exact = paper.closest_size(cfg.n_layer, cfg.n_embd)
    out = []
    for col, (title, task, key, lower) in paper.COLUMNS.items():
        if task is None or task not in results:
            continue
        out.append((title, task, _ours(results, task, key), paper.TABLE3[size].get(col), lower))
    return size, exact, out


def markdown(results: dict[str, dict[str, Any]], cfg: GPT2Config, mode: str) -> str:
    size, exact, table = rows(results, cfg)
    note = "" if exact else (f" (this model, n_layer={cfg.n_layer} n_embd={cfg.n_embd}, is not a paper size; "
                             f"nearest shown)")
    lines = [f"# Zero-shot evaluation ({mode} mode)", "",
             f"Paper column: GPT-2 {size}, Table 3 of Radford et al. 2019{note}.", "",
             "| task | ours | paper | seconds |", "|---|---:|---:|---:|"]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"
    for title, task, ours, ref, _ in table:
        secs = results.get(task, {}).get("seconds")
        lines.append(f"| {title} | {fmt(ours)} | {fmt(ref)} | {fmt(secs)} |")
    lines += ["", "Metric details per task are in the JSON file; accuracies and F1 are percentages."]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, dict[str, Any]], cfg: GPT2Config, mode: str, path: str | os.PathLike) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size, _, table = rows(results, cfg)
    n = max(1, len(table))
    cols = min(4, n)
    rows_ = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(3.2 * cols, 2.8 * rows_), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (title, _, ours, ref, lower) in zip(axes.flat, table):
        vals = [ours or 0.0, ref or 0.0]
        ax.bar(["ours", f"paper {size}"], vals, color=["tab:blue", "tab:gray"])
        ax.set_title(f"{title} {'↓' if lower else '↑'}", fontsize=9)
        for i, v in enumerate([ours, ref]):
            ax.text(i, vals[i], "—" if v is None else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"GPT-2 zero-shot evals ({mode} mode)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: dict[str, dict[str, Any]], cfg: GPT2Config, mode: str,
                 md_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    pathlib.Path(md_path).write_text(markdown(results, cfg, mode))
    chart(results, cfg, mode, png_path)
