"""gpt2_jax.model equals HF's PyTorch GPT2LMHeadModel (fp32, eager attention) on the same random
weights, at the full 124M shape and for every CPU attention kernel; parameter counts are exact."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from gpt2_jax import interop, model
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError

# Published sizes of the four released models (tied embeddings counted once).
RELEASED_PARAMS = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168,
                   "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}

_forward = jax.jit(model.forward, static_argnums=2)


def _perturb(params, seed):
    """Add noise to every tensor so zero biases and unit LayerNorm scales are tested too."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + rng.normal(0.0, 0.02, x.shape).astype(np.float32), params)


def _hf_model(params, cfg):
    hf_cfg = transformers.GPT2Config(**interop.hf_config_from_cfg(cfg), attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    sd = {k: torch.from_numpy(v) for k, v in interop.params_to_hf_state_dict(params, cfg).items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    assert torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)  # tied, as in GPT-2
    return hf


def _hf_logits(hf, tokens, **kw):
    with torch.no_grad():
        return hf(torch.from_numpy(np.asarray(tokens, np.int64)), **kw).logits.numpy()


@pytest.fixture(scope="module")
def gpt2_124m():
    cfg = GPT2Config.from_name("gpt2")
    params = model.init_params(cfg, jax.random.key(0))
    n_init = model.count_params(params)
    params = _perturb(params, seed=1)
    return cfg, params, n_init, _hf_model(params, cfg)


def test_count_params_124m_exact(gpt2_124m):
    cfg, _, n_init, hf = gpt2_124m
    assert n_init == RELEASED_PARAMS["gpt2"] == cfg.num_params
    assert sum(p.numel() for p in hf.parameters()) == n_init  # HF counts tied wte/lm_head once


def test_logits_equal_hf_at_124m(gpt2_124m):
    cfg, params, _, hf = gpt2_124m
    tokens = np.random.default_rng(2).integers(0, cfg.vocab_size, (2, 64))
    ours = np.asarray(_forward(params, tokens, cfg))
    theirs = _hf_logits(hf, tokens)
    assert ours.shape == theirs.shape == (2, 64, cfg.vocab_size)
    diff = np.abs(ours - theirs).max()
    assert diff <= 1e-4, f"max abs logits diff {diff}"
    assert np.abs(theirs).max() > 1.0  # the comparison is not between near-zero logits


@pytest.mark.parametrize("name", list(RELEASED_PARAMS))
def test_num_params_all_sizes(name):
    cfg = GPT2Config.from_name(name)
    assert cfg.num_params == RELEASED_PARAMS[name]
    assert model.count_params(model.param_shapes(cfg)) == RELEASED_PARAMS[name]  # no allocation
    with torch.device("meta"):  # HF's count of the same architecture, also without allocating
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**interop.hf_config_from_cfg(cfg)))
    assert sum(p.numel() for p in hf.parameters()) == RELEASED_PARAMS[name]


@pytest.fixture(scope="module")
def small():
    cfg = GPT2Config(n_layer=3, n_embd=64, n_head=4, n_positions=128, vocab_size=512, attn_block_size=32)
    params = _perturb(model.init_params(cfg, jax.random.key(3)), seed=4)
    hf = _hf_model(params, cfg)
    tokens = np.random.default_rng(5).integers(0, cfg.vocab_size, (2, 100))  # 100: not a block multiple
    return cfg, params, hf, tokens, _hf_logits(hf, tokens)


@pytest.mark.parametrize("scan", [True, False], ids=["scan", "unrolled"])
@pytest.mark.parametrize("impl", ["reference", "blocked", "xla"])
def test_every_cpu_attention_kernel_equals_hf(small, impl, scan):
    cfg, params, _, tokens, theirs = small
    ours = np.asarray(_forward(params, tokens, cfg.replace(attention=impl, scan_layers=scan)))
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_left_padded_batch_equals_hf_attention_mask(small):
    """key_mask + positions (left padding) agree with HF's attention_mask + position_ids."""
    cfg, params, hf, tokens, _ = small
    mask = np.ones(tokens.shape, bool)
    mask[1, :30] = False
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
    ours = np.asarray(_forward(params, tokens, cfg, positions_BT=jnp.asarray(positions),
                                    key_mask_BT=jnp.asarray(mask)))
    theirs = _hf_logits(hf, tokens, attention_mask=torch.from_numpy(mask.astype(np.int64)),
                        position_ids=torch.from_numpy(positions))
    np.testing.assert_allclose(ours[mask], theirs[mask], atol=1e-4, rtol=0)
    alone = np.asarray(_forward(params, tokens[1:, 30:], cfg))  # padding is invisible
    np.testing.assert_allclose(ours[1, 30:], alone[0], atol=1e-4, rtol=0)


def test_packed_rows_with_a_mask_equal_separate_rows(small):
    """An explicit mask + positions runs two sequences packed in one row exactly as two rows:
    what the evals' shared-prefix packing relies on."""
    cfg, params, _, tokens, theirs = small
    a, b = tokens[0, :60], tokens[1, :40]
    packed = np.concatenate([a, b])[None]
    positions = np.concatenate([np.arange(60), np.arange(40)])[None]
    seg = np.concatenate([np.zeros(60, int), np.ones(40, int)])
    mask = (seg[:, None] == seg[None, :]) & np.tril(np.ones((100, 100), bool))
    ours = np.asarray(_forward(params, packed, cfg, positions_BT=jnp.asarray(positions),
                               mask_BTS=jnp.asarray(mask[None])))[0]
    np.testing.assert_allclose(ours[:60], theirs[0, :60], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours[60:], theirs[1, :40], atol=1e-4, rtol=0)


def test_forward_refuses_more_tokens_than_the_context(small):
    cfg, params, *_ = small
    with pytest.raises(InputError, match="129 tokens exceed the model's context of n_positions=128"):
        model.forward(params, np.zeros((1, 129), np.int32), cfg)

