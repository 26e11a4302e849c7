"""gpt2_jax/train/report.py: WORKDIR/report.md and the training curve, written through the same
path layer as the rest of a run, so a gs:// workdir works (served locally by fake_gcs)."""
import json

from gpt2_jax.train import metrics, report


def test_metrics_summary_report_and_curve_on_object_storage(fake_gcs, monkeypatch, tmp_path):
    monkeypatch.setattr(metrics, "_tensorboard_writer", lambda logdir: None)  # TensorBoard talks to GCS itself
    monkeypatch.chdir(tmp_path)
    workdir = "gs://bucket/runs/tiny"
    writer = metrics.MetricsWriter(workdir, total_steps=3, console=False)
    for step in (1, 2, 3):  # an object store cannot append: each record rewrites the file
        writer.write(step, {"loss": 5.0 - step, "learning_rate": 1e-3})
    writer.write(3, {"eval_loss": 2.5})
    writer.close()
    local = fake_gcs / "bucket" / "runs" / "tiny"
    assert [r["step"] for r in metrics.read_jsonl(local / "metrics.jsonl")] == [1, 2, 3, 3]
    out = report.write_report(workdir, {"final_step": 3, "final_loss": 2.0}, ["ROMEO: hi"])
    assert str(out) == f"{workdir}/report.md"
    text = (local / "report.md").read_text()
    assert "| final_loss | 2 |" in text and "![training curve](training_curve.png)" in text and "ROMEO: hi" in text
    assert (local / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "gs:").exists()
    # a later `gpt2-jax report` reads the summary and samples back from the bucket
    (local / "summary.json").write_text(json.dumps({"final_step": 3}))
    (local / "samples.json").write_text(json.dumps(["JULIET: ho"]))
    assert "JULIET: ho" in report.write_report(workdir).read_text()
