"""gpt2_jax/train/metrics.py and mfu.py: jsonl + TensorBoard records, resume truncation, console
line, the chip table and MFU arithmetic."""
import glob

import jax
import pytest

from gpt2_jax.errors import ConfigError
from gpt2_jax.train import metrics, mfu


def _tb_scalars(logdir):
    import tensorflow as tf
    out = {}
    for f in glob.glob(f"{logdir}/events.out.tfevents.*"):
        for e in tf.compat.v1.train.summary_iterator(f):
            for v in e.summary.value:
                value = float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value
                out[(v.tag, e.step)] = value
    return out


def test_jsonl_tensorboard_and_truncation(tmp_path, capsys):
    w = metrics.MetricsWriter(tmp_path, total_steps=30)
    w.write(10, {"loss": 3.5, "learning_rate": 1e-3}, prefix="train/")
    w.write(10, {"eval_loss": 3.7}, prefix="eval/")
    w.write(20, {"loss": 2.5}, prefix="train/")
    w.console_line(20, {"loss": 2.5, "tokens_per_sec": 1234.0, "mfu": 0.125}, eta_sec=75)
    w.flush()
    w.close()
    records = metrics.read_jsonl(tmp_path / metrics.METRICS_FILE)
    assert [(r["step"], r.get("loss"), r.get("eval_loss")) for r in records] == [
        (10, 3.5, None), (10, None, 3.7), (20, 2.5, None)]
    tb = _tb_scalars(tmp_path / metrics.TENSORBOARD_DIR)
    assert tb[("train/loss", 10)] == pytest.approx(3.5) and tb[("train/loss", 20)] == pytest.approx(2.5)
    assert tb[("eval/eval_loss", 10)] == pytest.approx(3.7)
    line = capsys.readouterr().out
    assert "step 20/30" in line and "loss 2.5000" in line and "tok/s 1,234" in line
    assert "mfu 12.50%" in line and "ETA 1m15s" in line

    resumed = metrics.MetricsWriter(tmp_path, total_steps=30)  # a run resumed from step 10
    resumed.truncate_after(10)
    resumed.write(11, {"loss": 3.0})
    resumed.close()
    assert [r["step"] for r in metrics.read_jsonl(tmp_path / metrics.METRICS_FILE)] == [10, 10, 11]


def test_non_primary_writes_nothing(tmp_path, capsys):
    w = metrics.MetricsWriter(tmp_path / "w", primary=False, total_steps=5)
    w.write(1, {"loss": 1.0})
    w.console_line(1, {"loss": 1.0})
    w.close()
    assert not (tmp_path / "w").exists() and capsys.readouterr().out == ""


def test_throughput_excludes_first_interval_from_eta(monkeypatch):
    clock = iter([0.0, 100.0, 101.0, 102.0])  # first interval (compile) takes 100 s
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
    t = metrics.Throughput(0)
    t.mark(10, tokens_per_step=100, total_steps=50)
    r = t.mark(20, tokens_per_step=100, total_steps=50)
    assert r["tokens_per_sec"] == pytest.approx(1000.0) and r["eta_sec"] == pytest.approx(3.0)


def test_chip_table_and_slices():
    assert mfu.chip_spec("TPU v4") == (275.0, 32.0)
    assert mfu.chip_spec("TPU v5 lite")[0] == 197.0 and mfu.chip_spec("TPU v5p")[0] == 459.0
    assert mfu.chip_spec("TPU v6 lite")[0] == 918.0
    assert mfu.chip_spec("NVIDIA H100 80GB HBM3")[0] == 989.0 and mfu.chip_spec("NVIDIA A100-SXM4-40GB")[0] == 312.0
    assert mfu.chip_spec("cpu") is None
    assert mfu.slice_chips("v4-32") == ("tpu v4", 16) and mfu.slice_chips("v5p-128") == ("tpu v5p", 64)
    assert mfu.slice_chips("v5litepod-16") == ("tpu v5 lite", 16)
    with pytest.raises(ConfigError, match="v9-8"):
        mfu.slice_chips("v9-8")


def test_peak_and_mfu_arithmetic():
    devices = jax.devices()
    assert mfu.peak_tflops(devices, override=2.0) == 2.0 * len(devices)
    measured = mfu.peak_tflops(devices)  # CPU: a measured GEMM rate, cached
    assert 0.001 < measured < 100 and mfu.measured_cpu_tflops() == mfu.measured_cpu_tflops()
    assert mfu.mfu(tokens_per_sec=1000.0, flops_per_token=1e9, peak=2.0) == pytest.approx(0.5)
