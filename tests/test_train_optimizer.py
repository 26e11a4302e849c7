"""gpt2_jax/train/optimizer.py: decay mask from parameter paths, warmup + cosine schedule,
clipping, config validation."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import ConfigError
from gpt2_jax.model import param_shapes
from gpt2_jax.train.optimizer import OptimizerConfig, decay_mask, learning_rate_schedule, make_optimizer

CFG = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=16, vocab_size=64)


def _flat(tree):
    return {"/".join(str(getattr(k, "key", k)) for k in path): v
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_decay_mask_only_dense_kernels():
    mask = _flat(decay_mask(param_shapes(CFG)))
    decayed = sorted(k for k, v in mask.items() if v)
    assert decayed == ["h/attn/c_attn/kernel", "h/attn/c_proj/kernel", "h/mlp/c_fc/kernel", "h/mlp/c_proj/kernel"]
    assert not mask["wte"] and not mask["wpe"] and not mask["ln_f/scale"] and not mask["h/ln_1/bias"]
    with_emb = _flat(decay_mask(param_shapes(CFG), decay_embeddings=True))
    assert with_emb["wte"] and with_emb["wpe"] and not with_emb["h/mlp/c_fc/bias"]


def test_schedule_warmup_then_cosine_to_floor():
    oc = OptimizerConfig(peak_lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    sched = learning_rate_schedule(oc, total_steps=110)
    for s in (0, 5, 10):
        assert float(sched(s)) == pytest.approx(1e-3 * s / 10, rel=1e-6)
    for s in (35, 60, 85, 110):  # cosine from peak at 10 to 0.1·peak at 110
        frac = (s - 10) / 100
        want = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * frac))
        assert float(sched(s)) == pytest.approx(want, rel=1e-5)
    assert float(sched(500)) == pytest.approx(1e-4, rel=1e-6)


def test_weight_decay_masked_and_clipping_bounds_update():
    params = {"h": {"mlp": {"c_fc": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones((4,))}}},
              "wte": jnp.ones((8, 4))}
    oc = OptimizerConfig(peak_lr=0.1, warmup_steps=0, weight_decay=0.5, grad_clip=1.0, min_lr_ratio=1.0)
    opt = make_optimizer(oc, total_steps=10)
    state = opt.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = opt.update(zero, state, params)
    # zero gradient: only decoupled weight decay moves params, and only the kernel
    np.testing.assert_allclose(updates["h"]["mlp"]["c_fc"]["kernel"], -0.1 * 0.5 * 1.0, rtol=1e-6)
    assert float(jnp.abs(updates["h"]["mlp"]["c_fc"]["bias"]).max()) == 0.0
    assert float(jnp.abs(updates["wte"]).max()) == 0.0
    # a huge gradient is clipped to global norm 1 before Adam: first Adam step is ±lr per element
    huge = jax.tree.map(lambda p: jnp.full_like(p, 1e9), params)
    upd, _ = make_optimizer(oc.__class__(peak_lr=0.1, warmup_steps=0, weight_decay=0.0, min_lr_ratio=1.0),
                            10).update(huge, state, params)
    assert float(jnp.abs(upd["wte"]).max()) == pytest.approx(0.1, rel=1e-4)


def _first_moment(opt_state):
    """Adam's mu from an optimizer state, wherever optax nests it."""
    found = [s.mu for s in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "mu")) if hasattr(s, "mu")]
    return found[0]


def test_clip_scales_gradient_to_max_norm_before_adam():
    params, g = {"a": jnp.zeros(2)}, {"a": jnp.array([3.0, 4.0])}
    for clip, want in ((1.0, [0.6, 0.8]), (0.0, [3.0, 4.0])):  # 0 disables clipping
        opt = make_optimizer(OptimizerConfig(grad_clip=clip, b1=0.9), 10)
        _, state = opt.update(g, opt.init(params), params)
        np.testing.assert_allclose(_first_moment(state)["a"], 0.1 * np.array(want), rtol=1e-6)


@pytest.mark.parametrize("field,value", [("peak_lr", 0.0), ("warmup_steps", -1), ("min_lr_ratio", 1.5),
                                         ("weight_decay", -0.1), ("peak_lr", float("nan")),
                                         ("grad_clip", float("inf"))])
def test_bad_values_raise_config_error(field, value):
    with pytest.raises(ConfigError, match=field):
        OptimizerConfig(**{field: value})


def test_unknown_field_named():
    from gpt2_jax.train.config import TrainConfig
    with pytest.raises(ConfigError, match="unknown config key 'optimizer.lerning_rate'; known: .*peak_lr"):
        TrainConfig.from_dict({"optimizer": {"lerning_rate": 1.0}})
