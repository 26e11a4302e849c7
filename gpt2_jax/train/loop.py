"""The training loop: the only Python loop over steps. `train(config, workdir)` builds the mesh,
data, state (fresh or resumed from the newest readable checkpoint), runs the jitted step, logs,
evaluates, checkpoints, and stops cleanly on SIGTERM or with a TrainingError on a non-finite loss.
Importable from a notebook; experiments/main.py is a thin CLI over it."""
from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from gpt2_jax import sharding
from gpt2_jax.errors import ConfigError, TrainingError
from gpt2_jax.train import build, distributed, metrics as metrics_lib, mfu as mfu_lib, step as step_lib
from gpt2_jax.train.checkpoint import Checkpointer, checkpoint_dir
from gpt2_jax.train.optimizer import learning_rate_schedule, make_optimizer

log = logging.getLogger(__name__)

_CHECKED = ("loss", "grad_norm", "param_norm")


def _config_json(config) -> str:
    return config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort") else json.dumps(config)


class _Run:
    """The pieces of one run, built from the config (no state yet)."""

    def __init__(self, config, workdir: epath.Path):
        self.config, self.workdir = config, workdir
        self.rules = build.rules(config)
        self.mesh = build.mesh(config)
        self.dp = sharding.data_parallel_size(self.mesh, self.rules)
        build.check_batch(config, self.dp)
        self.tokenizer, self.tokenizer_spec = build.tokenizer(config, workdir)
        self.model_cfg = build.model_config(config, self.tokenizer.vocab_size)
        self.opt_cfg = build.optimizer_config(config)
        self.total_steps = int(config.total_steps)
        self.optimizer = make_optimizer(self.opt_cfg, self.total_steps)
        self.schedule = learning_rate_schedule(self.opt_cfg, self.total_steps)
        self.batch_size, self.seq_len = int(config.batch_size), int(config.seq_len)
        self.eval_batch_size = int(config.get("eval_batch_size", 0)) or self.batch_size
        self.batch_sh = sharding.batch_sharding(self.mesh, self.rules)
        self.state_sh = step_lib.state_shardings(self.model_cfg, self.optimizer, self.mesh, self.rules)
        self.opt_layout = _opt_layout(self)
        self.row_index, self.row_count = distributed.process_rows(self.batch_sh, self.batch_size)
        from gpt2_jax.data.pipeline import make_train_data  # TensorFlow enters here, not at import
        self.data = make_train_data(
            build.data_config(config, self.tokenizer_spec), self.tokenizer, seq_len=self.seq_len,
            global_batch_size=self.batch_size, seed=int(config.seed), process_index=self.row_index,
            process_count=self.row_count, data_dir=config.data.get("data_dir") or None, workdir=str(workdir))

    @property
    def meta(self) -> dict[str, Any]:
        return {"model_config": self.model_cfg.to_dict(), "tokenizer": self.tokenizer_spec,
                "experiment": self.config.get("name", ""), "seq_len": self.seq_len,
                "opt_state_layout": self.opt_layout}

    def global_batch(self, local: dict[str, np.ndarray], rows: int) -> dict[str, jax.Array]:
        return distributed.global_batch(local, self.batch_sh, rows)


# GPT2Config fields that change parameter shapes: a checkpoint restores only if they all match.
_ARCH_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner")


def _opt_layout(run: "_Run") -> str:
    """The optimizer state's tree structure, saved with checkpoints to refuse a mismatched resume."""
    return str(jax.tree.structure(step_lib.abstract_state(run.model_cfg, run.optimizer).opt_state))


def _check_resume(run: "_Run"):
    """check(step, meta) for Checkpointer.restore: ConfigError if the workdir's checkpoints belong to
    another model or optimizer (so they are neither restored wrongly nor taken for corrupt)."""
    want, layout = run.model_cfg.to_dict(), run.opt_layout

    def check(step: int, meta: dict[str, Any]) -> None:
        saved = meta.get("model_config", {})
        diff = [f"{k}={saved.get(k)} in checkpoints/{step} but {want[k]} in this config"
                for k in _ARCH_FIELDS if k in saved and saved[k] != want[k]]
        if diff:
            raise ConfigError(f"workdir {run.workdir} holds checkpoints of a different model ({'; '.join(diff)}); "
                              "use a new --workdir, or the settings the run was started with.")
        if meta.get("opt_state_layout", layout) != layout:
            raise ConfigError(f"workdir {run.workdir}: the optimizer state in checkpoints/{step} does not fit "
                              "this config's optimizer (was optimizer.grad_clip switched between 0 and > 0?); "
                              "use the run's original optimizer settings or a new --workdir.")
    return check


def _initial_state(run: _Run, ckpt: Checkpointer):
    abstract = step_lib.with_shardings(step_lib.abstract_state(run.model_cfg, run.optimizer), run.state_sh)
    state, meta = ckpt.restore_latest(abstract, _check_resume(run))
    if state is not None:
        log.info("resumed from step %d of %s", int(state.step), checkpoint_dir(run.workdir))
        return state, True
    init = jax.jit(functools.partial(step_lib.init_state, run.model_cfg, run.optimizer),
                   out_shardings=run.state_sh)
    return init(jax.random.key(int(run.config.seed))), False


def _evaluate(run: _Run, eval_step, params) -> float:
    """Mean token loss over the first eval_batches validation batches (nan without validation)."""
    nll, tokens = jnp.zeros(()), jnp.zeros(())
    for local in run.data.eval_batches(run.eval_batch_size, int(run.config.get("eval_batches", 0)) or None):
        m = eval_step(params, run.global_batch(local, run.eval_batch_size))
        nll, tokens = nll + m["nll_sum"], tokens + m["tokens"]
    tokens = float(tokens)
    return float(nll) / tokens if tokens else float("nan")


def _check_finite(pending: list[tuple[int, dict]], last_saved: int | None, workdir) -> list[dict]:
    """Fetch pending step metrics; TrainingError at the first non-finite loss/grad/param norm."""
    host = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, host):
        bad = [k for k in _CHECKED if not np.isfinite(m[k])]
        if bad:
            kept = (f"the last good checkpoint (step {last_saved}) is kept in {checkpoint_dir(workdir)}"
                    if last_saved is not None else "no checkpoint was saved")
            raise TrainingError(f"non-finite {', '.join(f'{k}={float(m[k])}' for k in bad)} at step {s}; "
                                f"stopped without saving it, {kept}. Lower optimizer.peak_lr, raise "
                                "warmup_steps or set optimizer.grad_clip, then rerun (it resumes).")
    return host


def train(config, workdir: str, *, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train per `config` (an experiments config: see experiments/configs/base.py) in `workdir`,
    resuming from its newest readable checkpoint. Returns a summary: final_step, final_loss,
    final_eval_loss, tokens_per_sec, mfu, preempted, runtime_sec, ... `on_step(step)` is called
    after each step is dispatched (tests use it to inject failures)."""
    t_start = time.time()
    workdir = epath.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"workdir {workdir} is a file, not a directory; pass a new or existing "
                          "directory as --workdir (checkpoints and metrics go there).")
    primary = jax.process_index() == 0
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(config, workdir)
    total = run.total_steps
    log_every, ckpt_every = int(config.log_every), int(config.checkpoint_every)
    eval_every = int(config.get("eval_every", 0))
    writer = metrics_lib.MetricsWriter(workdir, primary=primary, total_steps=total,
                                       console=bool(config.get("console", True)))
    if primary:
        (workdir / "config.json").write_text(_config_json(config))
    ckpt = Checkpointer(workdir, keep=int(config.get("keep_checkpoints", 3)),
                        async_save=bool(config.get("async_checkpointing", True)))
    flops_per_token = run.model_cfg.flops_per_token(run.seq_len)
    peak = mfu_lib.peak_tflops(run.mesh.devices.flat, float(config.get("peak_tflops", 0.0)))
    tokens_per_step = run.batch_size * run.seq_len
    summary: dict[str, Any] = {"workdir": str(workdir), "num_params": run.model_cfg.num_params,
                               "mesh": dict(run.mesh.shape), "final_loss": float("nan"),
                               "final_eval_loss": float("nan"), "preempted": False}
    if primary:
        print(f"{config.get('name', '') or 'run'}: {run.model_cfg.num_params / 1e6:.2f}M params, "
              f"mesh {build.describe_mesh(run.mesh)}, batch {run.batch_size}×{run.seq_len} tokens, "
              f"{run.data.packed.num_train_windows} train windows, {total} steps", flush=True)

    preempt = distributed.PreemptionWatch()
    try:
        # Abstract shapes and init run outside `activate`: the model's unboxing would otherwise try
        # to constrain concrete / shape-only values to the mesh.
        state, resumed = _initial_state(run, ckpt)
        start = int(jax.device_get(state.step))
        summary["start_step"], summary["resumed"] = start, resumed
        writer.truncate_after(start)
        last_saved = start if resumed else None
        with sharding.activate(run.mesh, run.rules):
            train_step = step_lib.jit_train_step(
                step_lib.make_train_step(run.model_cfg, run.optimizer, run.schedule,
                                         grad_accum_steps=int(config.get("grad_accum_steps", 1)),
                                         seed=int(config.seed)), run.state_sh, run.batch_sh)
            eval_step = step_lib.jit_eval_step(step_lib.make_eval_step(run.model_cfg),
                                               run.state_sh.params, run.batch_sh)
            batches = run.data.train_batches(start, total)
            throughput = metrics_lib.Throughput(start)
            pending: list[tuple[int, dict]] = []
            interval_losses: list[float] = []
            rates: list[float] = []
            compiled = None
            for s in range(start + 1, total + 1):
                batch = run.global_batch(next(batches), run.batch_size)
                if compiled is None:
                    t0 = time.perf_counter()
                    compiled = train_step.lower(state, batch).compile()
                    summary["compile_sec"] = time.perf_counter() - t0
                    throughput.reset(s - 1)
                state, m = compiled(state, batch)
                pending.append((s, m))
                if on_step is not None:
                    on_step(s)
                stop = preempt.reached(s)
                log_now, save_now = s % log_every == 0 or s == total, s % ckpt_every == 0 or s == total
                eval_now = eval_every > 0 and (s % eval_every == 0 or s == total)
                if not (log_now or save_now or eval_now or stop):
                    continue
                host = _check_finite(pending, last_saved, workdir)
                interval_losses += [float(h["loss"]) for h in host]
                last = host[-1]
                pending = []
                if log_now:
                    rate = throughput.mark(s, tokens_per_step, total)
                    scalars = {"loss": float(np.mean(interval_losses)), "learning_rate": float(last["learning_rate"]),
                               "grad_norm": float(last["grad_norm"]), "param_norm": float(last["param_norm"]),
                               "tokens_per_sec": rate["tokens_per_sec"],
                               "mfu": mfu_lib.mfu(rate["tokens_per_sec"], flops_per_token, peak)}
                    if s > start + log_every:  # the first interval includes pipeline warm-up
                        rates.append(rate["tokens_per_sec"])
                    writer.write(s, scalars, prefix="train/")
                    writer.console_line(s, scalars, rate["eta_sec"])
                    summary["final_loss"] = scalars["loss"]
                    interval_losses = []
                if eval_now:
                    eval_loss = _evaluate(run, eval_step, state.params)
                    writer.write(s, {"eval_loss": eval_loss}, prefix="eval/")
                    writer.console_line(s, {"eval_loss": eval_loss})
                    summary["final_eval_loss"] = eval_loss
                    throughput.reset(s)
                if save_now or stop:
                    ckpt.save(s, state, run.meta)
                    last_saved = s
                writer.flush()
                if stop:
                    ckpt.wait()
                    summary["preempted"] = True
                    if primary:
                        print(f"preempted: checkpoint saved at step {s}; rerun the same command to resume.",
                              flush=True)
                    break
            summary["final_step"] = int(jax.device_get(state.step))
        ckpt.wait()
    finally:
        preempt.close()
        ckpt.close()
        writer.close()
    summary["tokens_per_sec"] = float(np.mean(rates)) if rates else float("nan")
    summary["mfu"] = mfu_lib.mfu(summary["tokens_per_sec"], flops_per_token, peak) if rates else float("nan")
    summary["peak_tflops"] = peak
    summary["runtime_sec"] = time.time() - t_start
    return summary
