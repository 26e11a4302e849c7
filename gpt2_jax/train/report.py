"""WORKDIR/report.md of a training run, from what the run left in its workdir: the summary, the
training curve (metrics.jsonl -> training_curve.png), the zero-shot eval table (eval/results.md)
and samples (samples.json). `gpt2-jax report WORKDIR` regenerates it; the main job writes it."""
from __future__ import annotations

import json
from typing import Any

from etils import epath

from gpt2_jax.train.metrics import METRICS_FILE, read_jsonl

REPORT = "report.md"
CURVE = "training_curve.png"
SUMMARY = "summary.json"
SAMPLES = "samples.json"


def plot_training(workdir: str | epath.PathLike) -> epath.Path | None:
    """WORKDIR/training_curve.png: train and eval loss, and the learning rate, against step."""
    workdir = epath.Path(workdir)
    records = read_jsonl(workdir / METRICS_FILE)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    if not train:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    lrs = [(r["step"], r["learning_rate"]) for r in records if "learning_rate" in r]
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step"), ax.set_ylabel("loss (nats/token)"), ax.legend(), ax.grid(alpha=0.3)
    if lrs:
        ax_lr.plot(*zip(*lrs), color="tab:green")
    ax_lr.set_xlabel("step"), ax_lr.set_ylabel("learning rate"), ax_lr.grid(alpha=0.3)
    fig.suptitle(workdir.name)
    fig.tight_layout()
    out = workdir / CURVE
    with out.open("wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(workdir: str | epath.PathLike, summary: dict[str, Any] | None = None,
                 samples: list[str] | None = None) -> epath.Path:
    """WORKDIR/report.md from the workdir's summary.json, metrics.jsonl, eval/results.md and
    samples.json (or the given summary / samples); regenerates the curve. Safe to call again."""
    workdir = epath.Path(workdir)
    if summary is None and (workdir / SUMMARY).exists():
        summary = json.loads((workdir / SUMMARY).read_text())
    if samples is None and (workdir / SAMPLES).exists():
        samples = json.loads((workdir / SAMPLES).read_text())
    curve = plot_training(workdir)
    lines = [f"# {workdir.name}: training report", ""]
    if summary:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in summary.items()
                                            if not isinstance(v, (dict, list))] + [""]
    if curve:
        lines += [f"![training curve]({curve.name})", ""]
    evals = workdir / "eval" / "results.md"
    if evals.exists():
        lines += [evals.read_text().replace("# Zero-shot", "## Zero-shot"), "![eval chart](eval/results.png)", ""]
    if samples:
        lines += ["## Samples", ""] + [f"```\n{s}\n```\n" for s in samples]
    out = workdir / REPORT
    out.write_text("\n".join(lines))
    return out
