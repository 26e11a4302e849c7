"""Markdown table beside the paper's Table 3 row, and the PNG chart."""
from gpt2_jax.config import GPT2Config
from gpt2_jax.evals import report


def test_markdown_and_chart_for_a_paper_size(tmp_path):
    cfg = GPT2Config.from_name("gpt2-medium")
    results = {"wikitext2": {"word_ppl": 30.5, "bpb": 1.0, "n": 62, "seconds": 12.0},
               "lambada": {"acc": 40.0, "ppl": 20.25, "n": 5153, "seconds": 3.5}}
    md = report.markdown(results, cfg, "harness")
    assert "matches GPT-2 345M" in md and "nearest" not in md
    assert "| task | ours | 117M | **345M** | 762M | 1542M | seconds |" in md
    assert "| LAMBADA (PPL) | 20.25 | 35.13 | 15.60 | 10.87 | 8.63 | 3.50 |" in md
    assert "| LAMBADA (ACC) | 40.00 | 45.99 | 55.48 | 60.12 | 63.24 | 3.50 |" in md
    assert "| WikiText2 (PPL) | 30.50 | 29.41 | 22.76 | 19.93 | 18.34 | 12.00 |" in md  # harness word perplexity
    assert "PTB" not in md  # only tasks that ran
    report.write_report(results, cfg, "harness", tmp_path / "r.md", tmp_path / "r.png")
    assert (tmp_path / "r.md").read_text() == md
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_other_sizes_show_the_nearest_paper_model():
    md = report.markdown({"coqa": {"f1": 10.0, "em": 5.0, "n": 3}}, GPT2Config(n_layer=40, n_embd=1600, n_head=25),
                         "paper")
    assert "nearest: 1542M" in md and "| task | ours | 117M | 345M | 762M | **1542M** | seconds |" in md
    assert "| CoQA dev (F1) | 10.00 | — | — | — | 55.00 | — |" in md


def test_section_3_tasks_beside_the_paper():
    results = {"wsc273": {"acc": 60.0, "acc_full": 58.0, "n": 273, "seconds": 2.0},
               "cnn_dm": {"rouge1": 20.0, "rouge2": 4.0, "rougeLsum": 18.0, "r_avg": 14.0, "random3_rouge1": 28.0,
                          "random3_rouge2": 8.0, "random3_rougeLsum": 25.0},
               "wmt14_en_fr": {"bleu": 3.0}, "wmt14_fr_en": {"bleu": 7.5}, "nq": {"em": 1.5}}
    md = report.markdown(results, GPT2Config.from_name("gpt2"), "paper")
    assert "| Winograd WSC273 (ACC) | 60.00 | — | — | — | 70.70 | 2.00 |" in md
    assert "| CNN/DM TL;DR: (R-1) | 20.00 | — | — | — | 29.34 | — |" in md
    assert "| CNN/DM TL;DR: (R-L) | 18.00 | — | — | — | 26.58 | — |" in md  # summary-level ROUGE-L
    assert "| CNN/DM random-3 (R-2) | 8.00 | 8.63 | 8.63 | 8.63 | 8.63 | — |" in md  # no model: every size
    assert "| WMT-14 En→Fr (BLEU) | 3.00 | — | — | — | 5.00 | — |" in md
    assert "| WMT-14 Fr→En (BLEU) | 7.50 | — | — | — | 11.50 | — |" in md
    assert "| Natural Questions (EM) | 1.50 | — | — | — | 4.10 | — |" in md
