"""GPT2Config: the released family, exact parameter counts, FLOP model, validation."""
import jax
import pytest

from gpt2_jax import model
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import ConfigError

FAMILY = {"gpt2": (12, 768, 12, 124_439_808), "gpt2-medium": (24, 1024, 16, 354_823_168),
          "gpt2-large": (36, 1280, 20, 774_030_080), "gpt2-xl": (48, 1600, 25, 1_557_611_200)}


@pytest.mark.parametrize("name", FAMILY)
def test_family_shapes_and_counts(name):
    n_layer, n_embd, n_head, count = FAMILY[name]
    cfg = GPT2Config.from_name(name)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_positions) == (
        n_layer, n_embd, n_head, 50257, 1024)
    assert cfg.num_params == count
    shapes = model.param_shapes(cfg)  # abstract: nothing is allocated
    assert sum(x.size for x in jax.tree.leaves(shapes)) == count


def test_aliases_and_roundtrip():
    assert GPT2Config.from_name("124M") == GPT2Config.from_name("gpt2")
    assert GPT2Config.from_name("1558m").n_layer == 48
    cfg = GPT2Config.from_name("gpt2-medium", dtype="bfloat16")
    assert GPT2Config.from_dict(cfg.to_dict()) == cfg
    assert hash(cfg) == hash(GPT2Config.from_dict(cfg.to_dict()))


def test_flops_per_token():
    cfg = GPT2Config.from_name("gpt2")
    n = cfg.num_params - 1024 * 768
    assert cfg.flops_per_token(1024) == 6 * n + 12 * 12 * 1024 * 768
    assert cfg.flops_per_token(1024, training=False) == pytest.approx(cfg.flops_per_token(1024) / 3)


@pytest.mark.parametrize("bad,match", [
    (dict(n_embd=100, n_head=12), "not divisible"),
    (dict(attention="flash"), "attention"),
    (dict(remat="sometimes"), "remat"),
    (dict(dtype="int8"), "dtype"),
    (dict(n_layer=0), "n_layer"),
    (dict(dropout=1.5), "dropout"),
])
def test_invalid_fields(bad, match):
    with pytest.raises(ConfigError, match=match):
        GPT2Config(**bad)


def test_unknown_name_lists_known():
    with pytest.raises(ConfigError, match="gpt2-medium"):
        GPT2Config.from_name("gpt3")
    with pytest.raises(ConfigError, match="unknown GPT2Config fields"):
        GPT2Config.from_dict({"n_layers": 3})
