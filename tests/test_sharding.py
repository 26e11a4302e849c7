"""Mesh construction and the logical-axis rules table (multi-device behaviour is in test_train_*)."""
import jax
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


def test_fit_to_shape_replicates_indivisible_dims():
    class FakeMesh:  # only .shape is consulted
        shape = {"data": 1, "fsdp": 2, "tensor": 2}
    assert sharding._fit_to_shape(P("tensor", "fsdp"), (50257, 768), FakeMesh) == P(None, "fsdp")
    assert sharding._fit_to_shape(P(("data", "fsdp"), None), (8, 3), FakeMesh) == P("fsdp", None)
    assert sharding._fit_to_shape(P(None, "tensor"), (4, 6), FakeMesh) == P(None, "tensor")


def test_single_device_mesh_and_batch_sharding():
    mesh = sharding.make_mesh(-1, 1, 1, devices=jax.devices()[:1])
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"), None)
    assert sharding.data_parallel_size(mesh) == 1
