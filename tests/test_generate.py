"""gpt2_jax.generate: greedy decoding equals HF generate, cached logits equal full recomputation,
batched left-padded prompts equal each prompt alone, sampling respects top-k/top-p and the seed."""
import jax
import numpy as np
import pytest
import torch
import transformers

from gpt2_jax import decode, interop, model, sharding
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError
from gpt2_jax.generate import _decode, generate

PROMPTS = [[5, 17, 200, 3, 9, 41, 77], [250], [8, 8, 100, 2, 19, 64, 33, 90, 12, 7, 140, 6]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=256)
    rng = np.random.default_rng(0)  # wide random weights: varied, non-repeating greedy text
    params = jax.tree.map(lambda x: x + rng.normal(0, 0.15, x.shape).astype(np.float32),
                          model.init_params(cfg, jax.random.key(0)))
    hf = transformers.GPT2LMHeadModel.from_pretrained(
        interop.save_hf(params, cfg, tmp_path_factory.mktemp("hf")), attn_implementation="eager").eval()
    return cfg, params, hf


_forward = jax.jit(model.forward, static_argnums=2)


def _full_logits(params, cfg, seq):
    return np.asarray(_forward(params, np.asarray([seq]), cfg))[0].astype(np.float64)


def _allowed(logits_V, temperature, top_k=None, top_p=None):
    """Token ids that temperature + top-k + top-p sampling may emit, from full-forward logits."""
    z = logits_V / temperature
    order = np.argsort(-z, kind="stable")[:top_k]
    if top_p is not None:
        p = np.exp(z[order] - z[order].max())
        p /= p.sum()
        order = order[np.cumsum(p) - p < top_p]
    return set(order.tolist())


def test_greedy_equals_hf_generate(setup):
    cfg, params, hf = setup
    for prompt in PROMPTS:
        ours = generate(params, cfg, prompt, max_new_tokens=40)
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                                 eos_token_id=None, pad_token_id=0, attention_mask=torch.ones(1, len(prompt)))
        assert ours == theirs[0].tolist()
        assert len(ours) == len(prompt) + 40 and len(set(ours[len(prompt):])) > 3  # real, varied text


def test_batched_unequal_prompts_equal_each_alone(setup):
    cfg, params, _ = setup
    alone = [generate(params, cfg, p, max_new_tokens=20) for p in PROMPTS]
    assert generate(params, cfg, PROMPTS, max_new_tokens=20) == alone  # list of lists in and out
    same_len = np.asarray([p[:7] for p in PROMPTS if len(p) >= 7], np.int32)
    arr = generate(params, cfg, same_len, max_new_tokens=20)
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 27) and arr.dtype == np.int32
    assert arr.tolist() == [generate(params, cfg, row, max_new_tokens=20) for row in same_len.tolist()]
    one = generate(params, cfg, np.asarray(PROMPTS[0]), max_new_tokens=20)
    assert one.shape == (27,) and one.tolist() == alone[0]


def test_cached_logits_equal_full_recomputation(setup):
    """Every step's logits from the KV cache equal a forward pass over the whole sequence so far."""
    cfg, params, _ = setup
    outs, logits = generate(params, cfg, PROMPTS, max_new_tokens=24, temperature=1.0, rng=3, return_logits=True)
    for prompt, out, lg in zip(PROMPTS, outs, logits):
        assert lg.shape == (24, cfg.vocab_size)
        full = _full_logits(params, cfg, out)
        np.testing.assert_allclose(lg, full[len(prompt) - 1:-1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("top_k,top_p", [(5, None), (None, 0.6), (20, 0.5), (1, None)])
def test_sampling_stays_in_the_allowed_set(setup, top_k, top_p):
    cfg, params, _ = setup
    temperature = 0.8
    outs = generate(params, cfg, PROMPTS, max_new_tokens=24, temperature=temperature, top_k=top_k,
                    top_p=top_p, rng=jax.random.key(7))
    n_not_argmax = 0
    for prompt, out in zip(PROMPTS, outs):
        full = _full_logits(params, cfg, out)
        for t in range(len(prompt), len(out)):
            assert out[t] in _allowed(full[t - 1], temperature, top_k, top_p), (t, out[t])
            n_not_argmax += out[t] != int(np.argmax(full[t - 1]))
    if top_k == 1:
        assert n_not_argmax == 0  # top_k=1 is greedy
    else:
        assert n_not_argmax > 0  # it does sample, not just take the argmax


def test_same_seed_same_sample(setup):
    cfg, params, _ = setup
    kw = dict(max_new_tokens=16, temperature=1.0, top_p=0.9)
    a = generate(params, cfg, PROMPTS, rng=jax.random.key(11), **kw)
    assert generate(params, cfg, PROMPTS, rng=jax.random.key(11), **kw) == a
    assert generate(params, cfg, PROMPTS, rng=12, **kw) != a
    assert generate(params, cfg, PROMPTS, **kw) == generate(params, cfg, PROMPTS, rng=0, **kw)  # default key 0


def test_eos_stops_a_row(setup):
    cfg, params, _ = setup
    free = generate(params, cfg, PROMPTS[0], max_new_tokens=20)[len(PROMPTS[0]):]
    eos = free[5]
    stop = free.index(eos) + 1
    assert generate(params, cfg, PROMPTS[0], max_new_tokens=20, eos_id=eos) == PROMPTS[0] + free[:stop]
    arr = generate(params, cfg, np.asarray([PROMPTS[0]]), max_new_tokens=20, eos_id=eos)[0, len(PROMPTS[0]):]
    assert arr.tolist() == free[:stop] + [eos] * (20 - stop)


def test_decode_params_and_weights_dtype(setup):
    """Prepared params (decode.prepare, either layout) decode exactly like the model's own;
    weights_dtype decodes from weights rounded to that dtype (LayerNorm kept fp32): the same as
    handing in such weights, close to the fp32 logits, and not the fp32 logits themselves."""
    cfg, params, _ = setup
    want = generate(params, cfg, PROMPTS, max_new_tokens=20)
    for layout in decode.LAYOUTS:
        assert generate(decode.prepare(params, layout=layout), cfg, PROMPTS, max_new_tokens=20) == want
    rounded = jax.tree_util.tree_map_with_path(
        lambda path, x: x if "ln_" in jax.tree_util.keystr(path) else x.astype(jax.numpy.bfloat16), params)
    kw = dict(max_new_tokens=16, temperature=0.7, rng=2, return_logits=True)
    out16, lg16 = generate(params, cfg, PROMPTS[0], weights_dtype="bfloat16", **kw)
    out_r, lg_r = generate(rounded, cfg, PROMPTS[0], **kw)
    assert out16 == out_r
    np.testing.assert_allclose(lg16, lg_r, atol=1e-5)
    full = _full_logits(params, cfg, out16)[len(PROMPTS[0]) - 1:-1]  # fp32 along the bf16 sample
    err = np.abs(lg16 - full).max()
    assert 0 < err < 0.05 * np.abs(full).max()


def test_batches_and_a_layout_give_the_same_rows(setup):
    """batch_size decodes sorted batches and returns rows in the caller's order; a layout shards
    the batch over a mesh and returns every row: greedy text is the same either way."""
    cfg, params, _ = setup
    prompts = PROMPTS + [p[::-1] for p in PROMPTS]
    want = generate(params, cfg, prompts, max_new_tokens=12)
    assert generate(params, cfg, prompts, max_new_tokens=12, batch_size=2) == want
    layout = sharding.data_parallel()
    assert generate(params, cfg, prompts, max_new_tokens=12, layout=layout, batch_size=4) == want
    with pytest.raises(InputError, match="batch_size=0 must be None or a positive integer"):
        generate(params, cfg, prompts, batch_size=0)


def test_repeated_calls_reuse_the_compilation(setup):
    cfg, params, _ = setup
    generate(params, cfg, [1, 2, 3, 4, 5, 6, 7, 8, 9], max_new_tokens=10)
    before = _decode._cache_size()
    generate(params, cfg, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], max_new_tokens=12)  # same buckets (16, 16)
    generate(params, cfg, [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], max_new_tokens=9)
    assert _decode._cache_size() == before
    assert generate(params, cfg, [1, 2], max_new_tokens=0) == [1, 2]


def test_bad_inputs(setup):
    cfg, params, _ = setup
    with pytest.raises(InputError, match=r"prompt of 60 tokens \+ max_new_tokens=10 = 70 exceeds .*n_positions=64 tokens; "
                       r"shorten the prompt to at most 54 tokens .* or lower max_new_tokens to at most 4"):
        generate(params, cfg, [1] * 60, max_new_tokens=10)
    bad = [([], "prompt 0 is empty"), ([[1, 2], []], "prompt 1 is empty"), ([1, 256], "token id 256 at position 1"),
           ([[3], [-1]], "token id -1"), ("hello", "got str"), (np.zeros((2, 3), np.float32), "dtype float32")]
    for prompt, message in bad:
        with pytest.raises(InputError, match=message):
            generate(params, cfg, prompt, max_new_tokens=4)
    for kw, message in [(dict(temperature=-1.0), "temperature=-1.0"), (dict(temperature=float("nan")), "temperature"),
                        (dict(top_k=0), "top_k=0"), (dict(top_p=0.0), "top_p=0.0"), (dict(top_p=1.5), "top_p=1.5"),
                        (dict(eos_id=256), "eos_id=256"), (dict(max_new_tokens=-2), "max_new_tokens=-2"),
                        (dict(weights_dtype="bf16"), "weights_dtype='bf16' must be None or one of"),
                        (dict(weights_dtype="int8"), "weights_dtype=int8")]:
        with pytest.raises(InputError, match=message):
            generate(params, cfg, [1, 2, 3], **{"max_new_tokens": 4, **kw})
