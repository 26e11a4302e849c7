"""Markdown table beside the paper's Table 3 row, and the PNG chart."""
from gpt2_jax.config import GPT2Config
from gpt2_jax.evals import report


def test_markdown_and_chart_for_a_paper_size(tmp_path):
    cfg = GPT2Config.from_name("gpt2-medium")
    results = {"wikitext2": {"word_ppl": 30.5, "bpb": 1.0, "n": 62, "seconds": 12.0},
               "lambada": {"acc": 40.0, "ppl": 20.25, "n": 5153, "seconds": 3.5}}
    md = report.markdown(results, cfg, "harness")
    assert "GPT-2 345M" in md and "nearest" not in md
    assert "| LAMBADA (PPL) | 20.25 | 15.60 | 3.50 |" in md
    assert "| LAMBADA (ACC) | 40.00 | 55.48 | 3.50 |" in md
    assert "| WikiText2 (PPL) | 30.50 | 22.76 | 12.00 |" in md  # harness word perplexity
    assert "PTB" not in md  # only tasks that ran
    report.write_report(results, cfg, "harness", tmp_path / "r.md", tmp_path / "r.png")
    assert (tmp_path / "r.md").read_text() == md
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_other_sizes_show_the_nearest_paper_model():
    md = report.markdown({"coqa": {"f1": 10.0, "em": 5.0, "n": 3}}, GPT2Config(n_layer=40, n_embd=1600, n_head=25),
                         "paper")
    assert "GPT-2 1542M" in md and "nearest shown" in md and "| CoQA dev (F1) | 10.00 | 55.00 | — |" in md
