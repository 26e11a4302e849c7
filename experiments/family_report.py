"""The family's report: a Table-3-shaped Markdown table (tasks as rows, sizes as columns, non-embedding
parameters in the header, GPT-2 117M's published number and the 8-gram overlap beside each row) and
a Figure-1-style PNG (one panel per task: metric against non-embedding parameters, log x)."""
from __future__ import annotations

import datetime
import pathlib
import platform
from typing import Any, Sequence

from experiments.configs import family as family_cfg
from gpt2_jax.evals import paper

# (title, results key or None for the held-out loss, metric, paper Table 3 column, overlap task, lower is better)
ROWS = (
    ("Held-out loss (nats/token)", None, "held_out_loss", None, None, True),
    ("LAMBADA paper (PPL)", "lambada_paper", "ppl", "lambada_ppl", "lambada", True),
    ("LAMBADA paper (ACC)", "lambada_paper", "acc", "lambada_acc", "lambada", False),
    ("LAMBADA standard/openai (PPL)", "lambada_harness", "ppl", None, "lambada", True),
    ("LAMBADA standard/openai (ACC)", "lambada_harness", "acc", None, "lambada", False),
    ("WikiText2 (PPL)", "wikitext2_paper", "ppl", "wikitext2", "wikitext2", True),
    ("PTB (PPL)", "ptb_paper", "ppl", "ptb", "ptb", True),
    ("WikiText103 (PPL)", "wikitext103_paper", "ppl", "wikitext103", "wikitext103", True),
    ("Winograd WSC273 (ACC)", "wsc273_paper", "acc", None, "wsc273", False),
)


def value(record: dict[str, Any], key: str | None, metric: str) -> float | None:
    """One cell: the size's held-out loss or a task metric (None when absent)."""
    if key is None:
        v = record.get(metric)
    else:
        v = record.get("evals", {}).get(key, {}).get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def table(records: Sequence[dict[str, Any]], overlap: dict[str, dict[str, float]]) -> str:
    fmt = lambda v: "—" if v is None else f"{v:.3g}" if abs(v) >= 1e5 else f"{v:.2f}"
    head = " | ".join(f"{r['size']} ({r['n_layer']}×{r['n_embd']})<br>{_params(r['non_embedding_params'])}"
                      for r in records)
    lines = [f"| task | {head} | GPT-2 117M (paper) | 8-gram overlap % |",
             "|---|" + "---:|" * len(records) + "---:|---:|"]
    for title, key, metric, col, otask, lower in ROWS:
        cells = " | ".join(fmt(value(r, key, metric)) for r in records)
        ref = paper.TABLE3["117M"].get(col) if col else None
        ov = overlap.get(otask, {}).get("percent") if otask else None
        ov_s = "—" if ov is None else f"{ov:.3f}"
        lines.append(f"| {title} {'↓' if lower else '↑'} | {cells} | {fmt(ref)} | {ov_s} |")
    return "\n".join(lines) + "\n"


def figure(records: Sequence[dict[str, Any]], path: pathlib.Path) -> bool:
    """The PNG at `path`; False (and no file) when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["non_embedding_params"] for r in records]
    cols = 3
    rows = -(-len(ROWS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(ROWS):]:
        ax.axis("off")
    for ax, (title, key, metric, *_rest, lower) in zip(axes.flat, ROWS):
        ys = [value(r, key, metric) for r in records]
        pts = [(x, y) for x, y in zip(n, ys) if y is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:blue")
        for x, y, r in zip(n, ys, records):
            if y is not None:
                ax.annotate(r["size"], (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xscale("log")
        if metric == "ppl":
            ax.set_yscale("log")
        ax.set_title(f"{title} {'↓' if lower else '↑'}", fontsize=9)
        ax.set_xlabel("non-embedding parameters", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("GPT-2 in miniature: zero-shot metrics against model size", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return True


def write(workdir: pathlib.Path, variant: family_cfg.Variant, records: Sequence[dict[str, Any]],
          overlap: dict[str, dict[str, float]], seconds: float, files: Sequence[pathlib.Path]) -> tuple[str, str]:
    """WORKDIR/report.md and WORKDIR/family.png; returns their paths ("" for a figure not drawn)."""
    import jax
    png = workdir / "family.png"
    drawn = figure(records, png)
    losses = [value(r, None, "held_out_loss") for r in records]
    falls = all(a is not None and b is not None and b < a for a, b in zip(losses, losses[1:]))
    md = [f"# GPT-2 in miniature: variant `{variant.name}`", "",
          f"`python -m experiments.family --variant {variant.name}` — "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.processor() or platform.machine()}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s), {seconds / 60:.1f} min in all.", "",
          f"{variant.description}. {len(records)} sizes, each trained for {variant.tokens:,} tokens "
          f"({variant.total_steps} steps × {variant.batch_size} × {variant.seq_len}) on {len(files)} files of "
          f"`{variant.corpus}` with a {variant.tokenizer_vocab_size}-piece sentencepiece BPE trained on the same files. "
          "Held-out loss: the last 5% of the corpus's windows (never trained on), "
          f"{variant.eval_batches} × {variant.eval_batch_size} windows. Zero-shot tasks: the first "
          f"{variant.eval_limit} passages / lines / schemas of each test set, the paper's protocols "
          "(`paper` mode; LAMBADA also in lm-eval's `lambada_openai` definition, here 'standard/openai'). "
          "Perplexities are per original word; accuracies in percent. The 117M column is the paper's "
          "Table 3 (a 117M-parameter model trained on 40 GB of WebText: context, not a target).", "",
          table(records, overlap),
          f"Held-out loss {'strictly falls' if falls else 'does NOT strictly fall'} with size: "
          + " > ".join("—" if v is None else f"{v:.4f}" for v in losses) + ".", ""]
    md += ["![metric against non-embedding parameters](family.png)" if drawn else
           "No figure: matplotlib is not installed (`pip install matplotlib`, or the `[test]`/`[all]` extras' "
           "environment), so family.png was not drawn; the table above has every number.", ""]
    md += ["| size | n_layer | n_embd | n_head | peak lr | non-embedding params | all params | train loss "
           "| train s | tokens/s | eval s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        md.append(f"| {r['size']} | {r['n_layer']} | {r['n_embd']} | {r['n_head']} | {r['peak_lr']:g} | "
                  f"{r['non_embedding_params']:,} | {r['num_params']:,} | {r['train_loss']:.4f} | {r['train_sec']:.0f} | "
                  f"{r['tokens_per_sec']:,.0f} | {r['eval_sec']:.0f} |")
    md += ["", "8-gram overlap (paper §4, Bloom filter, `gpt2-jax overlap`): % of each test set's 8-grams "
           "found in the training files:", "", "| test set | % of 8-grams | % of unique 8-grams | 8-grams |",
           "|---|---:|---:|---:|"]
    for task, o in overlap.items():
        md.append(f"| {task} | {o['percent']:.4f} | {o['percent_unique']:.4f} | {o['ngrams']:,} |")
    report = workdir / "report.md"
    report.write_text("\n".join(md) + "\n")
    return str(report), str(png) if drawn else ""
