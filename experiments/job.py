"""The main job: train an experiment, evaluate it on the zero-shot suite, sample from it, and write
WORKDIR/report.md with its curves and tables. `run(config, workdir)` is importable from Colab;
`python -m experiments.main` calls it with the embedded default (tiny_shakespeare)."""
from __future__ import annotations

import json
import pathlib
from typing import Any, Callable

REPORT = "report.md"
CURVE = "training_curve.png"


def sample_texts(workdir: str | pathlib.Path, prompts: list[str], *, max_new_tokens: int = 64,
                 temperature: float = 0.8, top_k: int | None = 40, seed: int = 0) -> list[str]:
    """Continuations of `prompts` by the run's newest checkpoint (one batched, jitted decode)."""
    from gpt2_jax.generate import generate
    from gpt2_jax.tokenizer import Tokenizer
    from gpt2_jax.train import checkpoint

    params, cfg = checkpoint.load_params_from_workdir(workdir)
    tok = Tokenizer.load(checkpoint.tokenizer_spec(workdir))
    rows = [tok.encode(p) if p else [tok.eot_id] for p in prompts]
    n = max(1, min(max_new_tokens, cfg.n_positions - max(map(len, rows))))
    outs = generate(params, cfg, rows, max_new_tokens=n, temperature=temperature, top_k=top_k,
                    rng=seed, eos_id=tok.eot_id)
    return [p + tok.decode([t for t in out[len(row):] if t != tok.eot_id])
            for p, row, out in zip(prompts, rows, outs)]


def plot_training(workdir: str | pathlib.Path) -> pathlib.Path | None:
    """WORKDIR/training_curve.png: train and eval loss, and the learning rate, against step."""
    from gpt2_jax.train.metrics import METRICS_FILE, read_jsonl

    records = read_jsonl(pathlib.Path(workdir) / METRICS_FILE)
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
    fig.suptitle(pathlib.Path(workdir).name)
    fig.tight_layout()
    out = pathlib.Path(workdir) / CURVE
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(workdir: str | pathlib.Path, summary: dict[str, Any] | None = None,
                 samples: list[str] | None = None) -> pathlib.Path:
    """WORKDIR/report.md from what the run left in the workdir (summary.json, metrics.jsonl,
    eval/results.md, samples.json); regenerates the training-curve PNG. Safe to call again."""
    workdir = pathlib.Path(workdir)
    if summary is None and (workdir / "summary.json").is_file():
        summary = json.loads((workdir / "summary.json").read_text())
    if samples is None and (workdir / "samples.json").is_file():
        samples = json.loads((workdir / "samples.json").read_text())
    curve = plot_training(workdir)
    lines = [f"# {workdir.name}: training report", ""]
    if summary:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in summary.items()
                                            if not isinstance(v, (dict, list))] + [""]
    if curve:
        lines += [f"![training curve]({curve.name})", ""]
    evals = workdir / "eval" / "results.md"
    if evals.is_file():
        lines += [evals.read_text().replace("# Zero-shot", "## Zero-shot"),
                  "![eval chart](eval/results.png)", ""]
    if samples:
        lines += ["## Samples", ""] + [f"```\n{s}\n```\n" for s in samples]
    out = workdir / REPORT
    out.write_text("\n".join(lines))
    return out


def run_evals(config, workdir: str | pathlib.Path, *, log: Callable[[str], None] = print) -> Any:
    """config.eval_after_training: the zero-shot suite on the run's newest checkpoint, results in
    WORKDIR/eval/ (results.json, .md table beside the paper, .png). None when there is nothing to run."""
    tasks = list(config.get("eval_after_training", []) or [])
    if not tasks:
        return None
    from gpt2_jax.evals import runner
    from gpt2_jax.tokenizer import Tokenizer
    from gpt2_jax.train import checkpoint

    job = config.get("job") or {}
    log(f"[job] zero-shot eval on {', '.join(tasks)} (limit {job.get('eval_limit') or 'none'})")
    return runner.run_eval(checkpoint.load_params_from_workdir(workdir), tasks,
                           mode=job.get("eval_mode", "paper"), data_dir=config.data.get("data_dir") or None,
                           output=pathlib.Path(workdir) / "eval" / "results.json",
                           limit=int(job.get("eval_limit", 0)) or None,
                           tokenizer=Tokenizer.load(checkpoint.tokenizer_spec(workdir)), log=log)


def run(config, workdir: str | pathlib.Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (resuming if the workdir has checkpoints), evaluate `config.eval_after_training`,
    sample `config.job.prompts`, and write the report. Returns the training summary plus evals."""
    import jax

    from gpt2_jax.train import loop

    workdir = pathlib.Path(workdir)
    summary = loop.train(config, str(workdir))
    if jax.process_index() != 0 or summary.get("preempted"):  # evals run on one host, after a full run
        return summary
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    job = config.get("job", {})
    results = run_evals(config, workdir, log=log)
    samples = sample_texts(workdir, list(job.get("prompts", ["\n"])), seed=int(config.seed))
    (workdir / "samples.json").write_text(json.dumps(samples, indent=2) + "\n")
    for s in samples:
        log(f"[job] sample:\n{s}\n")
    report = write_report(workdir, summary, samples)
    log(f"[job] report: {report}")
    return {**summary, "eval": results, "report": str(report)}
