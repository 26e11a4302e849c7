"""Mesh construction and the logical-axis rules table (multi-device behaviour is in test_train_*)."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from gpt2_jax import sharding
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import ConfigError


@pytest.mark.parametrize("req,n,want", [((-1, 1, 1), 8, (8, 1, 1)), ((2, -1, 2), 8, (2, 2, 2)),
                                        ((1, 1, -1), 4, (1, 1, 4)), ((2, 2, 2), 8, (2, 2, 2))])
def test_resolve_mesh_shape(req, n, want):
    assert sharding.resolve_mesh_shape(*req, n) == want


@pytest.mark.parametrize("req,n,match", [((3, 1, 1), 8, "8 devices"), ((-1, -1, 1), 8, "more than one -1"),
                                         ((3, -1, 1), 8, "not divisible"), ((0, 1, 1), 1, "size < 1")])
def test_bad_mesh_shapes(req, n, match):
    with pytest.raises(ConfigError, match=match):
        sharding.resolve_mesh_shape(*req, n)


def test_every_param_axis_has_a_rule():
    from gpt2_jax.model import param_logical_axes
    ruled = {name for name, _ in sharding.DEFAULT_RULES}
    axes = {a for spec in jax.tree.leaves(param_logical_axes(GPT2Config(n_layer=1)),
                                          is_leaf=lambda x: isinstance(x, P)) for a in spec}
    assert axes <= ruled, axes - ruled


class _FakeMesh:  # Layout.spec consults only .shape
    shape = {"data": 1, "fsdp": 2, "tensor": 2}


def _layout(rules=sharding.DEFAULT_RULES):
    layout = object.__new__(sharding.Layout)
    object.__setattr__(layout, "mesh", _FakeMesh)
    object.__setattr__(layout, "rules", sharding.check_rules(rules))
    return layout


def test_spec_follows_the_rules_and_replicates_indivisible_dims():
    layout = _layout()
    assert layout.spec(("vocab", "embed"), (50257, 768)) == P(None, "fsdp")  # 50257 is odd: replicated
    assert layout.spec(("vocab", "embed"), (50304, 768)) == P("tensor", "fsdp")
    assert layout.spec(("batch", None), (8, 3)) == P("fsdp", None)  # size-1 data axis dropped
    assert layout.spec(("embed", "mlp"), (4, 6)) == P("fsdp", "tensor")
    assert layout.batch_axes() == ("fsdp",) and layout.data_parallel_size == 2


def test_a_mesh_axis_is_used_once_per_spec():
    """Like flax's rules: a logical name takes its first rule whose mesh axes are still unused."""
    layout = _layout((("a", "tensor"), ("b", "tensor"), ("b", "fsdp")))
    assert layout.spec(("a", "b")) == P("tensor", "fsdp")
    assert layout.spec(("b", "a")) == P("tensor", None)


def test_bad_rules_are_config_errors():
    with pytest.raises(ConfigError, match="unknown mesh axes"):
        sharding.check_rules([("batch", "model")])
    with pytest.raises(ConfigError, match="must be \\(logical_name, mesh_axes\\)"):
        sharding.check_rules([("batch",)])


def test_single_device_mesh_and_batch_sharding():
    mesh = sharding.make_mesh(-1, 1, 1, devices=jax.devices()[:1])
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    layout = sharding.Layout(mesh)
    assert layout.batch_sharding().spec == P(None, None) and layout.data_parallel_size == 1
    x = layout.put_batch(np.arange(6).reshape(3, 2))
    assert x.sharding == layout.batch_sharding() and x.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert hash(layout) == hash(sharding.Layout(mesh))  # hashable: a static jit argument
