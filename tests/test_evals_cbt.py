"""CBT: candidate scoring equals a direct PyTorch computation on the real sample questions."""
import numpy as np
import pytest

from evals_reference import model, rel_close, torch_score
from gpt2_jax.evals import cbt, readers

SAMPLES = [("CN", "test", "2500ex"), ("NE", "test", "2500ex"), ("CN", "valid", "2000ex"), ("NE", "valid", "2000ex")]


@pytest.fixture(scope="module")
def questions(data_dir):
    out = []
    for kind, split, n in SAMPLES:
        out += readers.read_cbt(data_dir / f"cbt/samples/cbtest_{kind}_{split}_{n}.excerpt1.txt", kind, split)
    return out


def test_texts_fill_the_blank(questions):
    q = questions[0]  # "... see that young XXXXX sitting under the tree ? '"
    ctx, cont = cbt.texts(q, "man", "paper")
    assert ctx.endswith("Do you think she will see that young") and cont == " man sitting under the tree?'"
    assert ctx.startswith("(3) Hollenmadchen. 'But where is he to find the Witch-maiden?'")
    ctx, cont = cbt.texts(q, "man", "harness")
    assert ctx.endswith("see that young") and cont == " man sitting under the tree ? '"
    assert ctx.startswith("-LRB- 3 -RRB- Hollenmadchen . ` But where")  # raw tokens, line numbers dropped


@pytest.mark.parametrize("mode", ["paper", "harness"])
def test_matches_torch(questions, mode):
    _, cfg, scorer, tok, _ = model()
    got = cbt.evaluate(scorer, tok, questions, mode)
    correct = []
    for q in questions:
        lls = []
        for cand in q.candidates:
            ctx, cont = cbt.texts(q, cand, mode)
            assert ctx == ctx.rstrip()
            whole, c = tok.encode(ctx + cont), tok.encode(ctx)
            n = len(whole) - len(c)
            seq = whole[-(cfg.n_positions + 1):]
            lp, _ = torch_score(seq[:-1], seq[1:])
            lls.append(lp[-n:].sum())
        mine = [s.logp.sum() for s in scorer.score(cbt.requests(q, mode, tok, cfg.n_positions))]
        assert all(rel_close(a, b) for a, b in zip(mine, lls)), (mine, lls)
        correct.append(q.candidates[int(np.argmax(lls))] == q.answer)
    assert got == {"acc": 100.0 * np.mean(correct), "n": 4}


@pytest.mark.parametrize("mode", ["paper", "harness"])
def test_shared_prefix_equals_whole_requests(questions, mode):
    """The 10 candidates packed around one copy of their context score as each candidate with its
    whole context does (per candidate, per token, within 1e-5), and the accuracy is the same."""
    from gpt2_jax.evals.scoring import Scorer
    params, cfg, _, tok, _ = model()
    shared, whole = Scorer(params, cfg, batch_size=4), Scorer(params, cfg, batch_size=4, share_prefix=False)
    reqs = [r for q in questions for r in cbt.requests(q, mode, tok, cfg.n_positions)]
    for a, b in zip(shared.score(reqs), whole.score(reqs)):
        np.testing.assert_allclose(a.logp, b.logp, rtol=1e-5, atol=1e-5)
    assert cbt.evaluate(shared, tok, questions, mode) == cbt.evaluate(whole, tok, questions, mode)
    assert shared.stats.forward_tokens * 2 < whole.stats.forward_tokens  # contexts truncated to 128 here
