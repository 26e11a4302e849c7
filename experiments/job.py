"""The main job: train an experiment, evaluate it on the zero-shot suite, sample from it, and write
WORKDIR/report.md with its curves and tables. `run(config, workdir)` is importable from Colab;
`python -m experiments.main` calls it with the embedded default (tiny_shakespeare).

Every step runs on every process (SPMD): evaluation and sampling shard their batches over all
devices, and only process 0 writes files, so a pod never waits on a collective only one host runs."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

from etils import epath


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What the job does after training (config.eval_after_training and config.job.*)."""
    eval_tasks: tuple[str, ...] = ()      # zero-shot tasks run on the final checkpoint
    eval_mode: str = "paper"              # paper (GPT-2 Table 3) | harness (lm-eval-harness definitions)
    eval_limit: int = 0                   # only the first N examples per task; 0 = all
    prompts: tuple[str, ...] = ("\n",)    # sampled into WORKDIR/samples.json and the report


def sample_texts(workdir: str | epath.PathLike, prompts: list[str], *, max_new_tokens: int = 64,
                 temperature: float = 0.8, top_k: int | None = 40, seed: int = 0) -> list[str]:
    """Continuations of `prompts` by the run's newest checkpoint (one batched, jitted decode over
    all devices; every process gets the same texts)."""
    from gpt2_jax import workdir as workdir_lib
    from gpt2_jax.generate import generate
    from gpt2_jax.sharding import data_parallel
    from gpt2_jax.tokenizer import Tokenizer

    params, cfg = workdir_lib.load_params_from_workdir(workdir)
    tok = Tokenizer.load(workdir_lib.tokenizer_spec(workdir))
    rows = [tok.encode(p) if p else [tok.eot_id] for p in prompts]
    n = max(1, min(max_new_tokens, cfg.n_positions - max(map(len, rows))))
    outs = generate(params, cfg, rows, max_new_tokens=n, temperature=temperature, top_k=top_k,
                    rng=seed, eos_id=tok.eot_id, layout=data_parallel())
    return [p + tok.decode([t for t in out[len(row):] if t != tok.eot_id])
            for p, row, out in zip(prompts, rows, outs)]


def run_evals(data_dir: str | None, job: JobConfig, workdir: str | epath.PathLike, *,
              log: Callable[[str], None] = print) -> Any:
    """The zero-shot suite on the run's newest checkpoint, results in WORKDIR/eval/ (results.json,
    .md table beside the paper, .png). None when there is nothing to run."""
    if not job.eval_tasks:
        return None
    from gpt2_jax import workdir as workdir_lib
    from gpt2_jax.evals import runner
    from gpt2_jax.tokenizer import Tokenizer

    log(f"[job] zero-shot eval on {', '.join(job.eval_tasks)} (limit {job.eval_limit or 'none'})")
    return runner.run_eval(workdir_lib.load_params_from_workdir(workdir), list(job.eval_tasks), mode=job.eval_mode,
                           data_dir=data_dir, output=epath.Path(workdir) / "eval" / "results.json",
                           limit=job.eval_limit or None,
                           tokenizer=Tokenizer.load(workdir_lib.tokenizer_spec(workdir)), log=log)


def run(config: Any, workdir: str | epath.PathLike, job: JobConfig | None = None, *,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (resuming if the workdir has checkpoints), evaluate the job's tasks, sample its
    prompts, and write the report. `config` is a TrainConfig (then pass `job`) or an experiment's
    ConfigDict (split into both). Returns the training summary plus evals."""
    import jax

    from gpt2_jax.train import loop
    from gpt2_jax.train.report import SAMPLES, SUMMARY, write_report

    if job is None:
        from experiments import registry
        config, job = registry.split(config)
    workdir = epath.Path(workdir)
    summary = loop.train(config, str(workdir))
    if summary.get("preempted"):  # every process saw the same preemption step: all stop here
        return summary
    primary = jax.process_index() == 0
    if primary:
        (workdir / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    results = run_evals(config.data.data_dir, job, workdir, log=log)
    samples = sample_texts(workdir, list(job.prompts), seed=config.seed)
    if not primary:
        return {**summary, "eval": results}
    (workdir / SAMPLES).write_text(json.dumps(samples, indent=2) + "\n")
    for s in samples:
        log(f"[job] sample:\n{s}\n")
    report = write_report(workdir, summary, samples)
    log(f"[job] report: {report}")
    return {**summary, "eval": results, "report": str(report)}
