"""results.json -> a Markdown table beside the paper's numbers for all four GPT-2 sizes (Table 3,
§3.4-3.8; the matching or nearest size marked), and a PNG chart (one panel per metric: ours vs
that size)."""
from __future__ import annotations

import os
from typing import Any

from etils import epath

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
        out.append((title, task, _ours(results, task, key), paper.published(size).get(col), lower))
    return size, exact, out


def markdown(results: dict[str, dict[str, Any]], cfg: GPT2Config, mode: str) -> str:
    size, exact, _ = rows(results, cfg)
    note = (f"this model matches GPT-2 {size}" if exact else
            f"this model (n_layer={cfg.n_layer} n_embd={cfg.n_embd}) is not a paper size; nearest: {size}")
    sizes = list(paper.SIZES)
    lines = [f"# Zero-shot evaluation ({mode} mode)", "",
             f"Paper columns: GPT-2 {', '.join(sizes)} of Radford et al. 2019 (Table 3, §3.4-3.8, Table 4); "
             f"{note} (**bold**); — where the paper has no number for that size; the random-3 baseline uses no "
             "model, so its row repeats Table 4's.", "",
             "| task | ours | " + " | ".join(f"**{s}**" if s == size else s for s in sizes) + " | seconds |",
             "|---|---:|" + "---:|" * len(sizes) + "---:|"]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"
    for col, (title, task, key, _) in paper.COLUMNS.items():
        if task is None or task not in results:
            continue
        refs = " | ".join(fmt(paper.published(s).get(col)) for s in sizes)
        lines.append(f"| {title} | {fmt(_ours(results, task, key))} | {refs} | {fmt(results[task].get('seconds'))} |")
    lines += ["", "Metric details per task are in the JSON file; accuracies, F1, ROUGE, BLEU and EM are percentages."]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, dict[str, Any]], cfg: GPT2Config, mode: str, path: str | os.PathLike) -> None:
    """The PNG at `path` (local or gs://: matplotlib writes into an epath file object)."""
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
    with epath.Path(path).open("wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def write_report(results: dict[str, dict[str, Any]], cfg: GPT2Config, mode: str,
                 md_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    epath.Path(md_path).write_text(markdown(results, cfg, mode))
    chart(results, cfg, mode, png_path)
