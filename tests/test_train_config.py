"""gpt2_jax/train/config.py: the typed boundary an application config crosses once. Every
experiment converts, round-trips through to_dict, and bad keys or values name themselves."""
import json

import pytest

from experiments import registry
from gpt2_jax.errors import ConfigError
from gpt2_jax.train.config import MeshConfig, ModelSpec, TrainConfig


@pytest.mark.parametrize("name", registry.names())
def test_every_experiment_becomes_a_train_config_and_round_trips(name):
    cfg = registry.train_config(name)
    assert isinstance(cfg.model, ModelSpec) and isinstance(cfg.mesh, MeshConfig)
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert TrainConfig.coerce(cfg) is cfg
    assert cfg.name == name


def test_values_keep_their_types_and_optional_strings_become_none():
    cfg = registry.train_config("tiny_test", overrides=["optimizer.weight_decay=0", "data.cache_dir="])
    assert cfg.optimizer.weight_decay == 0.0 and isinstance(cfg.optimizer.weight_decay, float)
    assert cfg.data.cache_dir is None and cfg.data.data_dir is None
    assert isinstance(cfg.logical_axis_rules, tuple) and all(isinstance(r, tuple) for r in cfg.logical_axis_rules)


@pytest.mark.parametrize("d,match", [
    ({"total_step": 5}, r"unknown config key 'total_step'; known: .*total_steps"),
    ({"model": {"n_embdd": 8}}, r"unknown config key 'model.n_embdd'"),
    ({"batch_size": "8"}, r"config key 'batch_size' must be int, got '8'"),
    ({"console": 1}, r"config key 'console' must be bool"),
    ({"model": 3}, r"config key 'model' must be a group of fields"),
    ({"seq_len": 0}, r"seq_len=0 must be a positive integer"),
    ({"batch_size": 8, "grad_accum_steps": 3}, r"batch_size=8 is not divisible by grad_accum_steps=3"),
    ({"remat": "some"}, r"remat='some' is not one of"),
    ({"model": {"attention": "flash"}}, r"model.attention='flash' is not one of"),
    ({"logical_axis_rules": [["batch", "model"]]}, r"unknown mesh axes \['model'\]"),
])
def test_bad_keys_and_values_are_config_errors(d, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(d)


def test_model_spec_resolves_family_names_and_custom_sizes():
    gpt2 = ModelSpec(name="124m", vocab_size=50304).resolve(1024, 50257, dtype="bfloat16")
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.vocab_size, gpt2.n_positions, gpt2.dtype) == (12, 768, 50304, 1024, "bfloat16")
    tiny = ModelSpec(name="custom", n_layer=2, n_embd=64, n_head=4).resolve(128, 512)
    assert (tiny.n_positions, tiny.vocab_size) == (128, 512)
    with pytest.raises(ConfigError, match="model.n_head is 0 and model.name is 'custom'"):
        ModelSpec(name="custom", n_layer=2, n_embd=64).resolve(128, 512)
    with pytest.raises(ConfigError, match="model.vocab_size=100 is smaller than the tokenizer's vocabulary"):
        ModelSpec(name="gpt2", vocab_size=100).resolve(1024, 50257)
    with pytest.raises(ConfigError, match="seq_len=2048 exceeds model.n_positions=1024"):
        ModelSpec(name="gpt2", n_positions=1024).resolve(2048, 50257)
