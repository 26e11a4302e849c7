"""experiments/notebooks/demo.ipynb runs top to bottom offline in a fresh kernel of this interpreter:
the install cell is skipped, the tiny model trains (a short run), samples, scores LAMBADA and plots
its curve. Parameters are overridden papermill-style by appending to the cell tagged "parameters"."""
import json
import os
import pathlib
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "experiments" / "notebooks" / "demo.ipynb"
STEPS, LIMIT = 40, 20
KERNEL = "gpt2-jax-test"


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def _cell(nb, needle: str):
    found = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(found) == 1, needle
    return found[0]


@pytest.fixture(scope="module")
def executed(tmp_path_factory, data_dir):
    """The notebook executed in a tmp working dir with a kernel spec that runs sys.executable."""
    from ipykernel.kernelspec import install

    root = tmp_path_factory.mktemp("notebook")
    install(kernel_name=KERNEL, prefix=str(root / "jupyter"))  # argv = [sys.executable, -m, ipykernel_launcher, ...]
    spec = json.loads((root / "jupyter/share/jupyter/kernels" / KERNEL / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "USE_RELEASED = False" in params[0].source  # offline by default
    params[0].source += f"\nTRAIN_STEPS = {STEPS}\nLAMBADA_LIMIT = {LIMIT}  # CI: a short run\n"
    run_dir = root / "cwd"
    run_dir.mkdir()
    saved = dict(os.environ)
    os.environ.update(JUPYTER_PATH=str(root / "jupyter/share/jupyter"), JAX_PLATFORMS="cpu", XLA_FLAGS="",
                      GPT2_JAX_DATA_DIR=str(data_dir),
                      PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        NotebookClient(nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(run_dir)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb, run_dir / "runs" / "demo"


def test_install_cell_is_skipped_when_the_package_is_importable(executed):
    nb, _ = executed
    cell = _cell(nb, "%pip install")
    assert "find_spec(\"gpt2_jax\") is None" in cell.source
    assert cell.outputs == []  # pip never ran


def test_trains_the_tiny_model_offline(executed):
    nb, workdir = executed
    from gpt2_jax.train.metrics import read_jsonl
    losses = [r["loss"] for r in read_jsonl(workdir / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 10 and losses[-1] < losses[0] - 0.5  # log_every = STEPS // 10; it learns
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [str(STEPS)]
    assert re.search(r"model: [\d,]+ parameters, 4 layers, d=128, context 128, vocabulary 1024",
                     _text(_cell(nb, "loop.train(")))


def test_prints_top_k_top_p_samples(executed):
    nb, _ = executed
    out = _text(_cell(nb, "g.generate("))
    parts = re.split(r"--- sample (\d) ---\n", out)
    assert parts[0] == "" and parts[1::2] == ["0", "1"], out
    for prompt, text in zip(["ROMEO:", "First Citizen:\nWe are"], parts[2::2]):
        assert text.startswith(prompt) and len(text.strip()) > len(prompt) + 20, out  # 60 new tokens


def test_scores_lambada_subset(executed):
    nb, workdir = executed
    m = re.search(r"LAMBADA accuracy: ([\d.]+)% on (\d+) passages", _text(_cell(nb, "run_eval(")))
    assert m and 0.0 <= float(m.group(1)) <= 100.0 and int(m.group(2)) == LIMIT
    results = json.loads((workdir / "eval" / "results.json").read_text())
    assert results["lambada"]["n"] == LIMIT and abs(results["lambada"]["acc"] - float(m.group(1))) < 0.01


def test_plots_the_training_curve_inline_and_to_png(executed):
    nb, workdir = executed
    cell = _cell(nb, "plt.show()")
    assert any("image/png" in o.get("data", {}) for o in cell.outputs if o.get("output_type") == "display_data")
    assert (workdir / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
