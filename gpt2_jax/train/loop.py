"""The training loop: the only Python loop over steps. `train(config, workdir)` builds the mesh,
data, state (fresh or resumed from the newest readable checkpoint), runs the jitted step, logs,
evaluates, checkpoints, and stops cleanly on SIGTERM or with a TrainingError on a non-finite loss.
Importable from a notebook; experiments/main.py is a thin CLI over it."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from gpt2_jax.distributed import from_process_0, sync
from gpt2_jax.errors import ConfigError, TrainingError
from gpt2_jax.train import build, distributed, init as init_lib, metrics as metrics_lib, mfu as mfu_lib
from gpt2_jax.train.checkpoint import Checkpointer, checkpoint_dir
from gpt2_jax.train.config import TrainConfig

log = logging.getLogger(__name__)

_CHECKED = ("loss", "grad_norm", "param_norm")
LOCAL_CACHE_HOME = epath.Path("~/.cache/gpt2_jax")  # token_cache/ of runs whose workdir is remote
# GPT2Config fields that change parameter shapes: a checkpoint restores only if they all match.
_ARCH_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner")


class _Data:
    """The run's tokenizer and packed corpus, bound to this process's rows of each global batch."""

    def __init__(self, run: build.Run, tokenizer, tokenizer_spec: str, workdir: epath.Path):
        c = run.config
        self.tokenizer, self.spec = tokenizer, tokenizer_spec
        self.row_index, self.row_count = distributed.process_rows(run.batch_sharding, c.batch_size)
        from gpt2_jax.data.pipeline import make_train_data  # TensorFlow enters here, not at import
        # the token cache is memory-mapped, so it needs a local disk: a gs:// run caches on each host
        cache_home = LOCAL_CACHE_HOME.expanduser() if "://" in str(workdir) else workdir
        self.train = make_train_data(
            dataclasses.replace(c.data, tokenizer=tokenizer_spec), tokenizer, seq_len=c.seq_len,
            global_batch_size=c.batch_size, seed=c.seed, process_index=self.row_index,
            process_count=self.row_count, data_dir=c.data.data_dir, workdir=str(cache_home))

    def global_batch(self, run: build.Run, local: dict[str, np.ndarray], rows: int) -> dict[str, jax.Array]:
        return distributed.global_batch(local, run.batch_sharding, rows)


def _check_resume(run: build.Run, workdir):
    """check(step, meta) for Checkpointer.restore: ConfigError if the workdir's checkpoints belong to
    another model or optimizer (so they are neither restored wrongly nor taken for corrupt)."""
    want, layout = run.model.to_dict(), run.opt_state_layout

    def check(step: int, meta: dict[str, Any]) -> None:
        saved = meta.get("model_config", {})
        diff = [f"{k}={saved.get(k)} in checkpoints/{step} but {want[k]} in this config"
                for k in _ARCH_FIELDS if k in saved and saved[k] != want[k]]
        if diff:
            raise ConfigError(f"workdir {workdir} holds checkpoints of a different model ({'; '.join(diff)}); "
                              "use a new --workdir, or the settings the run was started with.")
        if meta.get("opt_state_layout", layout) != layout:
            raise ConfigError(f"workdir {workdir}: the optimizer state in checkpoints/{step} does not fit "
                              "this config's optimizer (was optimizer.grad_clip switched between 0 and > 0?); "
                              "use the run's original optimizer settings or a new --workdir.")
    return check


def _initial_state(run: build.Run, ckpt: Checkpointer, workdir):
    """(state, resumed): the workdir's newest checkpoint if any (it wins over init_from, so a
    restarted fine-tuning run continues), else config.init_from's params, else a random init."""
    state, _ = ckpt.restore_latest(run.abstract_state(), _check_resume(run, workdir))
    init_from = run.config.init_from
    if state is not None:
        log.info("resumed from step %d of %s%s", int(state.step), checkpoint_dir(workdir),
                 f" (init_from={init_from!r} is not read: the run's own checkpoint takes precedence)"
                 if init_from else "")
        return state, True
    if init_from:
        return init_lib.init_state(run, init_from), False
    return run.init_state(jax.random.key(run.config.seed)), False


def _evaluate(run: build.Run, data: _Data, params) -> float:
    """Mean token loss over the first eval_batches validation batches (nan without validation)."""
    nll, tokens = jnp.zeros(()), jnp.zeros(())
    for local in data.train.eval_batches(run.config.eval_rows, run.config.eval_batches or None):
        m = run.eval_step(params, data.global_batch(run, local, run.config.eval_rows))
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


def train(config: TrainConfig | Any, workdir: str, *, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train per `config` (a TrainConfig, or an application config it is made from: see
    experiments/configs/base.py) in `workdir`, resuming from its newest readable checkpoint.
    Returns a summary: final_step, final_loss, final_eval_loss, tokens_per_sec, mfu, preempted,
    runtime_sec, ... `on_step(step)` is called after each step is dispatched (tests use it to
    inject failures)."""
    t_start = time.time()
    config = TrainConfig.coerce(config)
    workdir = epath.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"workdir {workdir} is a file, not a directory; pass a new or existing "
                          "directory as --workdir (checkpoints and metrics go there).")
    primary = jax.process_index() == 0
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
    tokenizer, tokenizer_spec = build.tokenizer(config, workdir)
    run = build.assemble(config, tokenizer.vocab_size)
    data = _Data(run, tokenizer, tokenizer_spec, workdir)
    meta = build.meta(run, tokenizer_spec)
    total = config.total_steps
    log_every, ckpt_every, eval_every = config.log_every, config.checkpoint_every, config.eval_every
    writer = metrics_lib.MetricsWriter(workdir, primary=primary, total_steps=total, console=config.console)
    if primary:
        (workdir / "config.json").write_text(config.to_json())
    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, async_save=config.async_checkpointing)
    flops_per_token = run.model.flops_per_token(config.seq_len)
    mesh = run.layout.mesh
    # decided once for the run: process 0 looks the chip up (or measures the CPU) and tells the others
    peak, = from_process_0(mfu_lib.peak_tflops(mesh.devices.flat, config.peak_tflops) if primary else 0.0)
    tokens_per_step = config.batch_size * config.seq_len
    summary: dict[str, Any] = {"workdir": str(workdir), "num_params": run.model.num_params,
                               "mesh": dict(mesh.shape), "final_loss": float("nan"),
                               "final_eval_loss": float("nan"), "preempted": False}
    if primary:
        print(f"{config.name or 'run'}: {run.model.num_params / 1e6:.2f}M params, "
              f"mesh {build.describe_mesh(mesh)}, batch {config.batch_size}×{config.seq_len} tokens, "
              f"{data.train.packed.num_train_windows} train windows, {total} steps", flush=True)

    preempt = distributed.PreemptionWatch()
    try:
        state, resumed = _initial_state(run, ckpt, workdir)
        start = int(jax.device_get(state.step))
        summary["start_step"], summary["resumed"] = start, resumed
        summary["init_from"] = config.init_from if config.init_from and not resumed else ""
        writer.truncate_after(start)
        last_saved = start if resumed else None
        batches = data.train.train_batches(start, total)
        throughput = metrics_lib.Throughput(start)
        pending: list[tuple[int, dict]] = []
        interval_losses: list[float] = []
        rates: list[float] = []
        compiled = None
        for s in range(start + 1, total + 1):
            batch = data.global_batch(run, next(batches), config.batch_size)
            if s <= config.data.dump_batches:
                distributed.dump_batch(workdir, s, batch, primary=primary)
            if compiled is None:
                t0 = time.perf_counter()
                compiled = run.train_step.lower(state, batch).compile()
                summary["compile_sec"] = time.perf_counter() - t0
                sync("train_step_compiled")  # the first step's collectives start together
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
                eval_loss = _evaluate(run, data, state.params)
                writer.write(s, {"eval_loss": eval_loss}, prefix="eval/")
                writer.console_line(s, {"eval_loss": eval_loss})
                summary["final_eval_loss"] = eval_loss
                throughput.reset(s)
            if save_now or stop:
                ckpt.save(s, state, meta)
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
    # process 0's clock for every process, so all report the same global throughput and MFU
    summary["tokens_per_sec"], = from_process_0(float(np.mean(rates)) if rates else float("nan"))
    summary["mfu"] = mfu_lib.mfu(summary["tokens_per_sec"], flops_per_token, peak) if rates else float("nan")
    summary["peak_tflops"] = peak
    summary["runtime_sec"] = time.time() - t_start
    return summary
