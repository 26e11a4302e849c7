"""LAMBADA: both modes equal a direct PyTorch computation; accuracy counts what the model predicts;
the full real test file runs."""
import math

import numpy as np
import pytest

from evals_reference import model, rel_close, stopword_ids, torch_logits
from gpt2_jax.evals import lambada, readers


def _torch_lambada(texts):
    """Straightforward per-passage computation of every LAMBADA quantity with the torch model."""
    _, cfg, _, tok, _ = model()
    stop = np.array(sorted(stopword_ids()))
    rows = []
    for text in texts:
        ctx = text.rsplit(" ", 1)[0]
        whole, ctx_ids = tok.encode(text), tok.encode(ctx)
        n = len(whole) - len(ctx_ids)
        seq = whole[-(cfg.n_positions + 1):]
        lp = torch_logits(seq[:-1])[-n:]
        tgt = np.array(seq[-n:])
        ll = lp[np.arange(n), tgt]
        masked = lp[-1].copy()
        masked[stop] = -np.inf
        rows.append(dict(ll=ll.sum(), word=(lp.argmax(-1) == tgt).all(), last=lp[-1].argmax() == tgt[-1],
                         last_ll=ll[-1], stop=masked.argmax() == tgt[-1]))
    mean = lambda k: float(np.mean([r[k] for r in rows]))
    return {"harness": {"acc": 100 * mean("word"), "ppl": math.exp(-mean("ll"))},
            "paper": {"acc": 100 * mean("last"), "acc_stopword": 100 * mean("stop"), "acc_word": 100 * mean("word"),
                      "ppl": math.exp(-mean("ll")), "ppl_last_token": math.exp(-mean("last_ll"))}}


@pytest.fixture(scope="module")
def passages(data_dir):
    return readers.read_lambada(data_dir=data_dir)


@pytest.mark.parametrize("mode", ["paper", "harness"])
def test_matches_torch(passages, mode):
    _, _, scorer, tok, _ = model()
    texts = passages[:24] + [p for p in passages if len(tok.encode(p)) > 129][:4]  # incl. truncated ones
    got = lambada.evaluate(scorer, tok, texts, mode)
    want = _torch_lambada(texts)[mode]
    assert got["n"] == len(texts) and set(want) <= set(got)
    for k, v in want.items():
        assert rel_close(got[k], v) if "ppl" in k else got[k] == v, (k, got[k], v)


def test_accuracy_counts_the_models_own_predictions(passages):
    """Passages whose last word is the model's greedy next token score 100% in both modes."""
    _, _, scorer, tok, _ = model()
    stop = stopword_ids()
    made, stop_targets = [], 0
    for p in passages[:400]:
        ctx = p.rsplit(" ", 1)[0]
        ids = tok.encode(ctx)[-128:]
        t = int(torch_logits(ids)[-1].argmax())
        word = tok.decode([t])
        if word.startswith(" ") and word[1:].isalpha() and tok.encode(ctx + word)[-1] == t:
            made.append(ctx + word)
            stop_targets += t in stop
        if len(made) == 6:
            break
    assert len(made) == 6
    for mode in ("paper", "harness"):
        assert lambada.evaluate(scorer, tok, made, mode)["acc"] == 100.0
    got = lambada.evaluate(scorer, tok, made, "paper")
    assert got["acc_stopword"] == pytest.approx(100.0 * (6 - stop_targets) / 6)


def test_full_test_file(passages):
    _, _, scorer, tok, _ = model()
    got = lambada.evaluate(scorer, tok, passages, "paper")
    assert got["n"] == 5153
    assert 0 <= got["acc_stopword"] <= 100 and 0 <= got["acc"] <= 100
    assert math.isfinite(got["ppl"]) and got["ppl"] > got["ppl_last_token"] > 1
