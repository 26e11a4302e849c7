"""The device mesh and the one logical-axis rules table that maps every parameter and activation
axis to mesh axes (`data`, `fsdp`, `tensor`). Experiment configs may override the table."""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axes. Params: FSDP shards the embed dim, tensor parallelism splits heads,
# MLP and vocab (Megatron style). Activations: batch over data+fsdp, heads/mlp over tensor.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("qkv", None),
    ("norm", None),
    ("positions", None),
    ("layers", None),
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
)

log = logging.getLogger(__name__)


def resolve_mesh_shape(data: int, fsdp: int, tensor: int, n_devices: int) -> tuple[int, int, int]:
    """Fill the one -1 entry with the remaining devices; check the product equals n_devices."""
    shape = [data, fsdp, tensor]
    if shape.count(-1) > 1:
        raise ConfigError(f"mesh (data={data}, fsdp={fsdp}, tensor={tensor}) has more than one -1; "
                          "set at most one axis to -1 (= the rest of the devices).")
    if any(s == 0 or s < -1 for s in shape):
        raise ConfigError(f"mesh (data={data}, fsdp={fsdp}, tensor={tensor}) has a size < 1; "
                          "use positive sizes or -1.")
    fixed = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if n_devices % fixed:
            raise ConfigError(f"mesh (data={data}, fsdp={fsdp}, tensor={tensor}) cannot use {n_devices} "
                              f"devices: {n_devices} is not divisible by {fixed}. Change mesh.* so the "
                              "fixed axes divide the device count.")
        shape[shape.index(-1)] = n_devices // fixed
    if math.prod(shape) != n_devices:
        raise ConfigError(f"mesh data×fsdp×tensor = {shape[0]}×{shape[1]}×{shape[2]} = {math.prod(shape)} "
                          f"but {n_devices} devices are available. Set the sizes so their product is "
                          f"{n_devices}, or set one of them to -1.")
    return tuple(shape)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes), with
    Auto axis types so `jax.jit` shardings propagate as under pjit."""
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(data, fsdp, tensor, len(devices))
    try:
        from jax.experimental import mesh_utils
        dev_array = mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # non-TPU topologies or unusual device counts: plain row-major order
        dev_array = np.asarray(devices).reshape(shape)
    return Mesh(dev_array, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3)


def _fit_to_shape(spec: P, shape: tuple[int, ...], mesh: Mesh) -> P:
    """Drop mesh axes from dims they do not divide (e.g. vocab 50257 over tensor=2): replicate
    such a dim rather than fail; the waste is one small table."""
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        kept = tuple(a for a in names if mesh.shape[a] > 1)
        if kept and dim % math.prod(mesh.shape[a] for a in kept):
            log.info("dim of size %d not divisible by mesh axes %s: replicated", dim, kept)
            kept = ()
        out.append(kept[0] if len(kept) == 1 else (kept or None))
    return P(*out)


def logical_to_sharding(logical_tree: Any, shapes_tree: Any, mesh: Mesh,
                        rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> Any:
    """NamedShardings for a pytree of logical PartitionSpecs and matching shapes/arrays."""
    mesh_specs = nn.logical_to_mesh(logical_tree, list(rules))
    return jax.tree.map(lambda spec, x: NamedSharding(mesh, _fit_to_shape(spec, x.shape, mesh)),
                        mesh_specs, shapes_tree, is_leaf=lambda x: isinstance(x, P))


def param_shardings(cfg: GPT2Config, mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> Any:
    """The NamedSharding of every GPT-2 parameter under `rules`."""
    from gpt2_jax.model import param_logical_axes, param_shapes
    return logical_to_sharding(param_logical_axes(cfg), param_shapes(cfg), mesh, rules)


def batch_sharding(mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> NamedSharding:
    """Sharding of a [batch, length] token array: batch over the data-parallel axes."""
    return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch", None), list(rules)))


def data_parallel_size(mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> int:
    """How many ways the batch dimension is split."""
    axes = nn.logical_to_mesh_axes(("batch",), list(rules))[0]
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return math.prod(mesh.shape[a] for a in names)


@contextlib.contextmanager
def activate(mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES):
    """Make `mesh` and `rules` current so the model's activation constraints take effect."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(list(rules)):
        yield
