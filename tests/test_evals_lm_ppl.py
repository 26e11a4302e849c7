"""WikiText / PTB / enwik8 / text8: normalisation counts, document split, both modes equal a direct
PyTorch computation, and the full real test files run."""
import math
import re

import numpy as np
import pytest

from evals_reference import harness_windows, model, rel_close, torch_score, torch_total_ll
from gpt2_jax.evals import detokenizers, lm_ppl, readers


@pytest.fixture(scope="module")
def files(data_dir):
    return {t: readers.read_text(t, data_dir=data_dir) for t in ("wikitext2", "wikitext103", "ptb")}


def test_original_token_counts_match_the_files(files):
    # SOURCES.md: 241211 whitespace tokens + 4358 <eos> (WT2, WT103 test); PTB 78669 + 3761.
    assert lm_ppl.original_token_count(files["wikitext2"]) == 245569
    assert lm_ppl.original_token_count(files["wikitext103"]) == 245569
    assert lm_ppl.original_token_count(files["ptb"]) == 82430


@pytest.mark.parametrize("task", ["wikitext2", "wikitext103"])
def test_document_split_is_one_page_per_article(files, task):
    text = files[task]
    pages = lm_ppl.wikitext_documents(text)
    headings = [i for i, ln in enumerate(text.split("\n")) if re.fullmatch(r" = [^=].*[^=] = ", ln)]
    assert len(pages) == len(headings) == 62
    assert all(re.fullmatch(r" = [^=].*[^=] = ", p.split("\n")[0]) for p in pages)
    assert "\n".join(pages) == text[text.index("\n") + 1:]  # everything after the leading blank line


def _torch_paper_ll(tokens, eot, ctx, stride):
    """Windows ending at ctx, ctx + stride, ...: each reads up to ctx tokens before its end and
    scores the targets not scored by the previous window."""
    seq, n = [eot] + tokens, len(tokens)
    ends = [min(ctx, n)]
    while ends[-1] < n:
        ends.append(min(ends[-1] + stride, n))
    total, prev = 0.0, 0
    for e in ends:
        start = max(0, e - ctx)
        lp, _ = torch_score(seq[start:e], seq[start + 1:e + 1])
        total += lp[len(lp) - (e - prev):].sum()
        prev = e
    return total


@pytest.mark.parametrize("task,lines,stride", [("wikitext2", 30, 64), ("wikitext103", 30, 128), ("ptb", 40, 32)])
def test_paper_mode_matches_torch(files, task, lines, stride):
    _, cfg, scorer, tok, _ = model()
    text = "".join(files[task].splitlines(keepends=True)[:lines])
    got = lm_ppl.paper_metrics(scorer, tok, task, text, context=128, stride=stride)
    tokens = tok.encode(lm_ppl.PAPER_DETOK[task](text))
    ll = _torch_paper_ll(tokens, tok.eot_id, 128, stride)
    n_orig = len(text.split()) + lines
    assert got["n"] == n_orig and got["bpe_tokens"] == len(tokens)
    assert rel_close(got["ppl"], math.exp(-ll / n_orig)) and rel_close(got["token_ppl"], math.exp(-ll / len(tokens)))


@pytest.mark.parametrize("task,lines", [("wikitext2", 90), ("ptb", 40)])
def test_harness_mode_matches_torch(files, task, lines):
    _, cfg, scorer, tok, _ = model()
    text = "".join(files[task].splitlines(keepends=True)[:lines])
    got = lm_ppl.harness_metrics(scorer, tok, task, text)
    if task == "wikitext2":
        docs = lm_ppl.wikitext_documents(text)
        assert len(docs) >= 2
        strings = [detokenizers.harness_wikitext_detokenize(d) for d in docs]
    else:
        docs = strings = [text]
    ll = sum(torch_total_ll(harness_windows(tok.encode(s), tok.eot_id, cfg.n_positions)) for s in strings)
    words = sum(len(re.split(r"\s+", d)) for d in docs)
    n_bytes = sum(len(d.encode()) for d in docs)
    assert got["n"] == len(docs) and got["words"] == words and got["bytes"] == n_bytes
    assert rel_close(got["word_ppl"], math.exp(-ll / words))
    assert rel_close(got["byte_ppl"], math.exp(-ll / n_bytes))
    assert rel_close(got["bpb"], -ll / n_bytes / math.log(2))


@pytest.mark.parametrize("task", ["enwik8", "text8"])
def test_char_benchmarks_on_generated_files(tmp_path, task):
    _, cfg, scorer, tok, _ = model()
    rng = np.random.default_rng(3)
    words = ["the", "of", "anarchism", "café", "<page>", "x&amp;y", "1999", "naïve"] if task == "enwik8" else \
        ["the", "of", "anarchism", "one", "nine", "zero", "originated"]
    sep = "\n" if task == "enwik8" else " "
    body = sep.join(" ".join(rng.choice(words, 12)) for _ in range(400)).encode()
    p = tmp_path / task
    p.write_bytes(body)
    raw = readers.read_char_benchmark(task, p)
    assert raw == body[int(len(body) * 0.95):]
    text = raw.decode("utf-8", errors="replace")
    tokens = tok.encode(text)
    paper = lm_ppl.paper_metrics(scorer, tok, task, text, context=128, stride=64, n_bytes=len(raw))
    assert rel_close(paper["bpb"], -_torch_paper_ll(tokens, tok.eot_id, 128, 64) / len(raw) / math.log(2))
    harness = lm_ppl.harness_metrics(scorer, tok, task, text)
    ll = torch_total_ll(harness_windows(tokens, tok.eot_id, 128))
    assert rel_close(harness["bpb"], -ll / len(text.encode()) / math.log(2))


def test_full_real_test_files(files):
    """Each full file once (the mode split keeps CI fast; the other mode is checked above)."""
    _, cfg, scorer, tok, _ = model()
    wt2 = lm_ppl.paper_metrics(scorer, tok, "wikitext2", files["wikitext2"], context=128, stride=128)
    assert wt2["n"] == 245569 and wt2["bpe_tokens"] > 250000 and math.isfinite(wt2["ppl"])
    ptb = lm_ppl.paper_metrics(scorer, tok, "ptb", files["ptb"], context=128, stride=128)
    assert ptb["n"] == 82430 and math.isfinite(ptb["ppl"])
    wt103 = lm_ppl.harness_metrics(scorer, tok, "wikitext103", files["wikitext103"])
    assert wt103["n"] == 62 and wt103["bytes"] > 1.2e6 and math.isfinite(wt103["word_ppl"])


def test_each_window_runs_once_with_little_padding(files):
    """Paper-mode perplexity puts each sliding window through the model once (forward tokens = the
    windows' tokens, each token scored once) and pads little: the windows fill their length bucket
    and a short last batch runs only the rows it needs."""
    from gpt2_jax.evals.scoring import Scorer, rolling_requests
    params, cfg, _, tok, _ = model()
    scorer = Scorer(params, cfg, batch_size=8)
    text = "".join(files["wikitext2"].splitlines(keepends=True)[:60])
    lm_ppl.paper_metrics(scorer, tok, "wikitext2", text, context=128, stride=64)
    tokens = tok.encode(lm_ppl.PAPER_DETOK["wikitext2"](text))
    windows = rolling_requests(tokens, tok.eot_id, 128, 64)
    assert len(windows) > 8 and len(windows) % 8
    assert scorer.stats.forward_tokens == sum(len(s) - 1 for s, _ in windows)
    assert scorer.stats.scored_tokens == len(tokens)
    assert scorer.stats.padded_tokens == 128 * len(windows)  # every window fills its 128-token row
    assert scorer.stats.metrics()["padding_fraction"] < 0.01
