"""CNN/DailyMail: the prompt is byte-for-byte article + "\nTL;DR:", the summary is the first 3
sentences of a top-k=2 sample, and the ROUGE numbers equal rouge-score called directly."""
import numpy as np
import pytest

import evals_samples as S
from evals_reference import model, torch_logits
from gpt2_jax.evals import cnn_dm, formats, textgen


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    return formats.read_cnn_dm(S.write_cnn_dm(tmp_path_factory.mktemp("cnn")))


def test_prompt_is_the_documented_format(stories):
    tok = model()[3]
    for s in stories:
        assert tok.decode(cnn_dm.prompt_tokens(tok, s.article, 1000)) == s.article + "\nTL;DR:"
    long = "word " * 300 + "end."
    ids = cnn_dm.prompt_tokens(tok, long, 64)
    assert len(ids) == 64 and tok.decode(ids) == ("word " * 300)[:len(tok.decode(ids)) - 7] + "\nTL;DR:"
    assert tok.decode(ids).startswith("word word")  # the article's beginning is kept


def test_summaries_and_rouge_equal_the_package(stories):
    from rouge_score import rouge_scorer
    _, cfg, scorer, tok, _ = model()
    metrics, preds = cnn_dm.evaluate(scorer, tok, stories, seed=3)
    max_new = cfg.n_positions // 2
    outs = cnn_dm.sample(scorer, [cnn_dm.prompt_tokens(tok, s.article, cfg.n_positions - max_new) for s in stories],
                         max_new, 2, 3, tok.eot_id)
    for p, o in zip(preds, outs):  # the summary is the first 3 sentences of the sample
        assert p["summary"] == "\n".join(textgen.split_sentences(tok.decode(o))[:3])
        assert 1 <= len(p["summary"].split("\n")) <= 3
    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    for prefix, field in (("", "summary"), ("random3_", "random3")):
        for k in textgen.ROUGE_TYPES:
            want = np.mean([sc.score("\n".join(s.highlights), p[field])[k].fmeasure for s, p in zip(stories, preds)])
            assert metrics[prefix + k] == pytest.approx(100 * want, abs=1e-9)
    assert metrics["n"] == 3 and metrics["random3_rouge1"] > 0
    for s, p in zip(stories, preds):  # random-3: sentences of the article, in order
        sents = textgen.split_sentences(s.article)
        picked = p["random3"].split("\n")
        assert len(picked) == min(3, len(sents)) and picked == [x for x in sents if x in picked]


def test_sampling_is_top_2():
    _, cfg, scorer, tok, _ = model()
    prompt = tok.encode("The city council approved a new park on Monday.\nTL;DR:")
    for seed in (0, 1):
        new = cnn_dm.sample(scorer, [prompt], 12, 2, seed, None)[0]
        lp = torch_logits(prompt + new[:-1], keep=len(new))
        top2 = np.argsort(-lp, axis=-1)[:, :2]
        assert all(t in row for t, row in zip(new, top2))
    assert len({tuple(cnn_dm.sample(scorer, [prompt], 12, 2, s, None)[0]) for s in range(4)}) > 1
