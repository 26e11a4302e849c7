"""experiments.family (issue #12 item 5): the CI variant trains the four tiny sizes on CBT's books,
scores each zero-shot and writes the report; the held-out loss strictly falls with size. One end-to-end
run (a few minutes on 2 cores), shared by the assertions below."""
import json
import math
import pathlib

import pytest

from experiments import family, family_report
from experiments.configs import family as family_cfg
from gpt2_jax.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ci_run(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("family_ci")
    lines = []
    out = family.run("ci", workdir, log=lines.append)
    return workdir, out, lines


def test_variants_span_30x_and_share_a_token_budget():
    for v in family_cfg.VARIANTS.values():
        n = [s.non_embedding_params for s in v.sizes]
        assert len(n) == 4 and n == sorted(n) and n[-1] >= 30 * n[0], (v.name, n)
        assert all(s.n_embd % s.n_head == 0 for s in v.sizes)
        assert "tinyshakespeare" not in v.corpus
    from gpt2_jax.config import GPT2Config
    s = family_cfg.VARIANTS["full"].sizes[-1]
    cfg = GPT2Config(vocab_size=4096, n_positions=256, n_embd=s.n_embd, n_layer=s.n_layer, n_head=s.n_head)
    assert s.non_embedding_params == cfg.num_params - (4096 + 256) * s.n_embd
    assert abs(s.non_embedding_params / (12 * s.n_layer * s.n_embd ** 2) - 1) < 0.01


def test_ci_variant_end_to_end(ci_run):
    workdir, out, lines = ci_run
    records = out["sizes"]
    assert [r["size"] for r in records] == [s.name for s in family_cfg.VARIANTS["ci"].sizes]
    losses = [r["held_out_loss"] for r in records]
    assert all(math.isfinite(x) for x in losses)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # strictly falls with size
    assert len({r["tokens"] for r in records}) == 1  # the same number of training tokens
    report = (workdir / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ")]
    for title, key, metric, *_ in family_report.ROWS:  # every task's number for every size
        row = next(line for line in table if line.startswith(f"| {title} "))
        cells = [c.strip() for c in row.split("|")[2:2 + len(records)]]
        want = [family_report.value(r, key, metric) for r in records]
        assert all(w is not None and math.isfinite(w) for w in want), (title, want)
        assert all(c != "—" for c in cells), row
        assert [float(c) for c in cells] == pytest.approx(want, rel=5e-3, abs=5e-3), row
    for r in records:
        assert f"{r['non_embedding_params'] / 1e3:.1f}k" in table[0]  # params in the header
        assert set(r["evals"]) == {"lambada_paper", "wikitext2_paper", "wikitext103_paper", "ptb_paper",
                                   "wsc273_paper", "lambada_harness"}
        assert r["evals"]["lambada_paper"]["n"] == 40 and r["evals"]["wsc273_paper"]["n"] == 40
    png = workdir / "family.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "![" in report
    assert set(out["overlap"]) == set(family_cfg.OVERLAP_TASKS)
    assert all(0 <= o["percent"] <= 100 and o["ngrams"] > 0 for o in out["overlap"].values())
    assert json.loads((workdir / "results.json").read_text())["sizes"][0]["size"] == "xs"
    assert sum("held-out loss" in line for line in lines) == 4  # one progress line per size at least


def test_rerun_resumes_from_results(ci_run):
    workdir, out, _ = ci_run
    lines = []
    again = family.run("ci", workdir, log=lines.append)
    assert [r["held_out_loss"] for r in again["sizes"]] == [r["held_out_loss"] for r in out["sizes"]]
    assert sum("skipping" in line for line in lines) == 4


def test_bad_variant_and_missing_corpus(tmp_path):
    with pytest.raises(ConfigError, match="unknown family variant 'huge'.*full"):
        family_cfg.get_variant("huge")
    with pytest.raises(DataError, match="no training files match.*GPT2_JAX_DATA_DIR"):
        family.corpus_files(family_cfg.VARIANTS["ci"], str(tmp_path))
    assert family.main(["--variant", "huge"]) == 2
