"""The scoring core: log-probs and greedy flags equal PyTorch's, windows equal lm-eval-harness's."""
import jax
import numpy as np
import pytest

from evals_reference import harness_windows, model, rel_close, torch_greedy, torch_score
from gpt2_jax.errors import InputError
from gpt2_jax.evals import scoring


def test_scores_match_torch_for_mixed_lengths():
    _, cfg, scorer, *_ = model()
    rng = np.random.default_rng(0)
    reqs = [(list(rng.integers(0, 50257, size=ln)), n) for ln, n in
            [(2, 1), (10, 3), (129, 128), (129, 1), (60, 59), (80, 20), (33, 5), (100, 7), (17, 16)]]
    got = scorer.score(reqs)
    for (seq, n), s in zip(reqs, got):
        lp, greedy = torch_score(seq[:-1], seq[1:])
        np.testing.assert_allclose(s.logp, lp[-n:], rtol=1e-4, atol=1e-4)
        assert rel_close(s.logp.sum(), lp[-n:].sum())
        assert (s.greedy == greedy[-n:]).all()
        assert len(s.logp) == n


def test_shared_prefix_equals_whole_requests_and_torch():
    """Requests that share a context are packed around one copy of it; their scores equal scoring
    each request alone (share_prefix=False) and torch, and the context runs once."""
    params, cfg, _, _, _ = model()
    rng = np.random.default_rng(3)
    reqs = []
    for n_ctx, n_cands in ((60, 10), (20, 2), (90, 4), (5, 3)):
        ctx = list(rng.integers(0, 50257, n_ctx))
        for _ in range(n_cands):
            cont = list(rng.integers(0, 50257, int(rng.integers(1, 8))))
            reqs.append(scoring.pair_request(ctx, cont, cfg.n_positions))
    shared = scoring.Scorer(params, cfg, batch_size=4)
    whole = scoring.Scorer(params, cfg, batch_size=4, share_prefix=False)
    got, ref = shared.score(reqs), whole.score(reqs)
    for (seq, n), a, b in zip(reqs, got, ref):
        np.testing.assert_allclose(a.logp, b.logp, atol=1e-5, rtol=1e-5)
        assert (a.greedy == b.greedy).all()
        lp, _ = torch_score(seq[:-1], seq[1:], keep=n)
        np.testing.assert_allclose(a.logp, lp, atol=1e-4, rtol=1e-4)
    assert shared.stats.forward_tokens < whole.stats.forward_tokens / 3
    assert shared.stats.scored_tokens == whole.stats.scored_tokens == sum(n for _, n in reqs)


def test_greedy_flags_on_the_models_own_argmax():
    _, cfg, scorer, tok, _ = model()
    prompt = tok.encode("The quick brown fox jumps over the lazy dog because")
    cont = torch_greedy(prompt, 6)
    seq = prompt + cont
    s = scorer.score([(seq, 6)])[0]
    assert s.greedy.all() and s.greedy_allowed.all()
    banned = np.ones(cfg.vocab_size, bool)
    banned[cont[-1]] = False  # forbid the last argmax: it can no longer be the allowed argmax
    s2 = scorer.score([(seq, 6)], banned)[0]
    assert s2.greedy.all() and not s2.greedy_allowed[-1] and s2.greedy_allowed[:-1].all()


@pytest.mark.parametrize("n_tokens,ctx", [(1, 8), (7, 8), (8, 8), (9, 8), (50, 8), (300, 128)])
def test_rolling_windows_equal_lm_eval_harness(n_tokens, ctx):
    toks = list(range(1000, 1000 + n_tokens))
    assert scoring.rolling_requests(toks, 50256, ctx, ctx) == harness_windows(toks, 50256, ctx)


@pytest.mark.parametrize("n_tokens,ctx,stride", [(50, 8, 3), (300, 128, 64), (5, 8, 8), (129, 128, 1)])
def test_sliding_windows_score_each_token_once(n_tokens, ctx, stride):
    toks = list(range(1000, 1000 + n_tokens))
    reqs = scoring.rolling_requests(toks, 50256, ctx, stride)
    scored = [t for seq, n in reqs for t in seq[-n:]]
    assert scored == toks
    for i, (seq, n) in enumerate(reqs):
        # as much context as fits: the window reads min(ctx, tokens before its last target) tokens
        assert len(seq) - 1 == min(ctx, seq[-1] - 1000 + 1)
        assert i == 0 or n <= stride


def test_encode_pair_and_truncation():
    tok = model()[3]
    ctx, cont = scoring.encode_pair(tok, "Hello big ", "world")
    assert tok.decode(ctx) == "Hello big" and tok.decode(cont) == " world"
    seq, n = scoring.pair_request(list(range(200)), [7, 8], 128)
    assert seq == list(range(73, 200)) + [7, 8] and n == 2 and len(seq) == 129


def test_mesh_spans_all_devices_and_rejects_overlong_requests():
    _, cfg, scorer, *_ = model()
    assert scorer.mesh.devices.size == len(jax.devices()) and scorer.layout.data_parallel_size == len(jax.devices())
    assert scorer.batch_size % len(jax.devices()) == 0
    with pytest.raises(InputError, match="request 0: 131 tokens"):
        scorer.score([(list(range(131)), 1)])
    with pytest.raises(InputError, match=r"token id 50257 is outside the model's vocabulary \[0, 50257\)"):
        scorer.score([([1, 2, 50257], 1)])


def test_greedy_matches_torch_and_stops_at_eos():
    _, cfg, scorer, tok, _ = model()
    prompts = [tok.encode("Once upon a time"), tok.encode("The lobster " * 60), [50256]]
    got = scorer.greedy(prompts, 10)
    for p, g in zip(prompts, got):
        assert g == torch_greedy(p[-(cfg.n_positions - 10):], 10)  # long prompts keep their end
    eos = got[0][3]
    stopped = scorer.greedy(prompts[:1], 10, eos_id=eos)[0]
    first = got[0].index(eos)
    assert stopped[:first + 1] == got[0][:first + 1] and set(stopped[first:]) == {eos}
    with pytest.raises(InputError, match="max_new_tokens=128 must be in"):
        scorer.greedy(prompts, 128)


def test_greedy_does_not_keep_a_second_copy_of_the_weights():
    params, cfg, _, tok, _ = model()
    scorer = scoring.Scorer(params, cfg)  # fresh: greedy has never run on it
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(scorer.params))
    live_before = sum(x.nbytes for x in jax.live_arrays())
    assert scorer.greedy([tok.encode("Once upon a time")], 4) == scorer.greedy([tok.encode("Once upon a time")], 4)
    assert sum(x.nbytes for x in jax.live_arrays()) - live_before < weight_bytes / 2
