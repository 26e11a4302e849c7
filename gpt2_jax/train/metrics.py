"""Where training metrics go: WORKDIR/metrics.jsonl (one JSON object per logged step), TensorBoard
event files (clu.metric_writers; TensorFlow's own summary ops when tensorboard is absent) and one
console line per log step with throughput and ETA. Only process 0 writes."""
from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Mapping

from etils import epath

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def read_jsonl(path: str | epath.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (empty list if the file does not exist)."""
    path = epath.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _TFEventWriter:
    """Scalars to TensorBoard event files with TensorFlow's core summary ops (no tensorboard pkg)."""

    def __init__(self, logdir: str):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2
        self._tf = tf
        self._writer = tf.summary.create_file_writer(logdir)
        self._meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        with self._writer.as_default():
            for k, v in scalars.items():
                self._tf.summary.write(k, self._tf.constant(float(v), self._tf.float32), step=step,
                                       metadata=self._meta)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _tensorboard_writer(logdir: str):
    try:
        from clu import metric_writers
        return metric_writers.create_default_writer(logdir, asynchronous=False)
    except ImportError:  # clu's writer needs the tensorboard package
        try:
            return _TFEventWriter(logdir)
        except ImportError:
            log.warning("neither tensorboard nor tensorflow is installed: no TensorBoard events.")
            return None


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricsWriter:
    """Fan-out of scalar metrics. Non-primary processes get a writer that does nothing."""

    def __init__(self, workdir: str | epath.PathLike, *, primary: bool = True, total_steps: int = 0,
                 console: bool = True):
        self.primary, self.total_steps, self.console = primary, total_steps, console
        self.path = epath.Path(workdir) / METRICS_FILE
        self._local = not str(self.path).startswith(("gs://", "s3://"))
        self._lines: list[str] = []
        self._tb = None
        if primary:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tb = _tensorboard_writer(str(epath.Path(workdir) / TENSORBOARD_DIR))

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (written by a run that died after its last checkpoint), so the
        resumed run's records continue the file without duplicates."""
        if not self.primary:
            return
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
        self._lines = [json.dumps(r) for r in kept]
        self.path.write_text("".join(line + "\n" for line in self._lines))

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        self._lines.append(line)
        if self._local:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        else:  # object stores cannot append: rewrite the (small) file
            self.path.write_text("".join(x + "\n" for x in self._lines))

    def write(self, step: int, scalars: Mapping[str, float], *, prefix: str = "") -> None:
        """One record {"step": step, **scalars} to jsonl and TensorBoard (`prefix` on TB tags)."""
        if not self.primary:
            return
        clean = {k: float(v) for k, v in scalars.items()}
        self._append({"step": int(step), **clean, "time": time.time()})
        if self._tb is not None:
            self._tb.write_scalars(int(step), {prefix + k: v for k, v in clean.items()})

    def console_line(self, step: int, scalars: Mapping[str, float], eta_sec: float = float("nan")) -> None:
        if not (self.primary and self.console):
            return
        width = len(str(self.total_steps))
        parts = [f"step {step:>{width}}/{self.total_steps}"]
        fmt = {"loss": "loss {:.4f}", "eval_loss": "eval_loss {:.4f}", "learning_rate": "lr {:.2e}",
               "grad_norm": "gnorm {:.3f}", "tokens_per_sec": "tok/s {:,.0f}", "mfu": "mfu {:.2%}"}
        parts += [f.format(scalars[k]) for k, f in fmt.items() if k in scalars]
        if step < self.total_steps and math.isfinite(eta_sec):
            parts.append(f"ETA {_fmt_duration(eta_sec)}")
        print(" | ".join(parts), flush=True)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class Throughput:
    """Wall-clock rate between log points; the first interval (compilation) is excluded from ETA."""

    def __init__(self, start_step: int):
        self._t = time.perf_counter()
        self._step = start_step
        self._steady: list[tuple[float, int]] = []  # (seconds, steps) of intervals after the first
        self._first = True

    def mark(self, step: int, tokens_per_step: int, total_steps: int) -> dict[str, float]:
        now = time.perf_counter()
        dt, dsteps = now - self._t, step - self._step
        if not self._first and dsteps > 0:
            self._steady.append((dt, dsteps))
        self._first = False
        self._t, self._step = now, step
        rate = dsteps / dt if dt > 0 and dsteps > 0 else 0.0
        steady = sum(s for _, s in self._steady) / max(sum(t for t, _ in self._steady), 1e-9)
        eta = (total_steps - step) / (steady if self._steady else max(rate, 1e-9))
        return {"steps_per_sec": rate, "tokens_per_sec": rate * tokens_per_step, "eta_sec": eta}

    def reset(self, step: int) -> None:
        """Restart the clock (after an eval or a blocking save, so they do not count as steps)."""
        self._t, self._step = time.perf_counter(), step
