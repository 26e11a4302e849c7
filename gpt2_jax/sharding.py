"""Where arrays live: the device mesh (`data`, `fsdp`, `tensor`) and the one logical-axis rules
table that maps every parameter and activation axis to mesh axes. A `Layout` (mesh + rules) is
the only sharding state; the model, the fused loss, attention kernels run per shard and the
evaluator receive it as an argument and read nothing ambient."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gpt2_jax.errors import ConfigError, log_once

MESH_AXES = ("data", "fsdp", "tensor")
Rules = tuple[tuple[str, Any], ...]

# logical axis -> mesh axes. Params: FSDP shards the embed dim, tensor parallelism splits heads,
# MLP and vocab (Megatron style). Activations: batch over data+fsdp, heads/mlp over tensor.
DEFAULT_RULES: Rules = (
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

def check_rules(rules: Sequence[Sequence[Any]]) -> Rules:
    """`rules` as a canonical, hashable table; ConfigError for malformed entries or unknown axes."""
    out = []
    for entry in rules:
        if len(entry) != 2 or not isinstance(entry[0], str):
            raise ConfigError(f"logical_axis_rules entry {tuple(entry)!r} must be (logical_name, mesh_axes) with "
                              f"mesh_axes None, one of {MESH_AXES} or a tuple of them.")
        axes = entry[1]
        names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        bad = [a for a in names if a not in MESH_AXES]
        if bad:
            raise ConfigError(f"logical_axis_rules maps {entry[0]!r} to unknown mesh axes {bad}; use {MESH_AXES}.")
        out.append((entry[0], names[0] if len(names) == 1 else (names or None)))
    return tuple(out)


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
    Auto axis types so `jax.jit` shardings propagate as under pjit. Devices are ordered by
    mesh_utils (ICI-aware on TPU); where it cannot order them, row-major order, said once."""
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(data, fsdp, tensor, len(devices))
    from jax.experimental import mesh_utils
    try:
        dev_array = mesh_utils.create_device_mesh(shape, devices=devices)
    except (ValueError, NotImplementedError, AssertionError) as e:
        log_once(f"mesh_utils cannot lay out {len(devices)} {devices[0].platform} devices as {shape} ({e}); "
                 "using process-major device order instead (fine on CPU/GPU; on TPU check the topology).")
        dev_array = np.asarray(devices).reshape(shape)
    return Mesh(dev_array, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3)


def _axes_of(entry: Any) -> tuple[str, ...]:
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


@dataclasses.dataclass(frozen=True)
class Layout:
    """A mesh and the rules table mapping logical axis names to its axes. Hashable, so it can be a
    static jit argument and a flax module field."""

    mesh: Mesh
    rules: Rules = DEFAULT_RULES

    def __post_init__(self):
        object.__setattr__(self, "rules", check_rules(self.rules))

    # ------------------------------------------------------------------ specs
    def spec(self, logical: Sequence[str | None], shape: Sequence[int] | None = None) -> P:
        """The PartitionSpec of an array with these logical axes. Each logical name takes its first
        rule whose mesh axes are still unused in the spec (flax's rule semantics); size-1 mesh axes
        are dropped, and with `shape`, so are axes that do not divide their dim (replicated)."""
        used: set[str] = set()
        out = []
        for i, name in enumerate(logical):
            chosen: tuple[str, ...] = ()
            for rule_name, entry in self.rules:
                if name is not None and rule_name == name and not used & set(_axes_of(entry)):
                    chosen = _axes_of(entry)
                    break
            used |= set(chosen)
            kept = tuple(a for a in chosen if self.mesh.shape[a] > 1)
            if kept and shape is not None and shape[i] % math.prod(self.mesh.shape[a] for a in kept):
                log_once(f"dim {i} ({name}) of size {shape[i]} is not divisible by mesh axes {kept}: replicated")
                kept = ()
            out.append(kept[0] if len(kept) == 1 else (kept or None))
        return P(*out)

    def sharding(self, logical: Sequence[str | None], shape: Sequence[int] | None = None) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(logical, shape))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def constrain(self, x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
        """`x` constrained to its logical axes' sharding (inside jit)."""
        return jax.lax.with_sharding_constraint(x, self.sharding(logical, x.shape))

    # ------------------------------------------------------------------ batches
    def batch_axes(self) -> tuple[str, ...]:
        """The mesh axes of size > 1 that the batch dimension is split over."""
        return tuple(a for a in _axes_of(self.spec(("batch",))[0]))

    @property
    def data_parallel_size(self) -> int:
        """How many ways the batch dimension is split."""
        return math.prod(self.mesh.shape[a] for a in self.batch_axes())

    def batch_sharding(self, ndim: int = 2) -> NamedSharding:
        """Sharding of a [batch, ...] array: the batch over the data-parallel axes."""
        return NamedSharding(self.mesh, P(self.batch_axes() or None, *([None] * (ndim - 1))))

    def put_batch(self, x: np.ndarray) -> jax.Array:
        """A global [batch, ...] array from a host array that every process holds in full: each
        process materialises only the rows of its own devices (no cross-host transfer)."""
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, self.batch_sharding(x.ndim), lambda idx: x[idx])

    # ------------------------------------------------------------------ trees
    def shardings(self, logical_tree: Any, shapes_tree: Any) -> Any:
        """NamedShardings for a pytree of logical PartitionSpecs and matching shapes/arrays (e.g. a
        model's parameters: model.param_shardings)."""
        return jax.tree.map(lambda spec, x: self.sharding(tuple(spec), x.shape), logical_tree, shapes_tree,
                            is_leaf=lambda x: isinstance(x, P))

    def put(self, tree: Any, shardings: Any = None) -> Any:
        """`tree` placed on `shardings` (default: replicated on this mesh). Every process passes the
        same values; with several processes each one fills only its own devices' shards."""
        if shardings is None:
            shardings = jax.tree.map(lambda _: self.replicated, tree)
        if jax.process_count() == 1:
            return jax.device_put(tree, shardings)

        def global_array(x, s):
            host = np.asarray(x)
            return jax.make_array_from_callback(host.shape, s, lambda idx: host[idx])
        return jax.tree.map(global_array, tree, shardings)


def constrain(x: jax.Array, logical: Sequence[str | None], layout: Layout | None) -> jax.Array:
    """`layout.constrain(x, logical)`, or `x` unchanged without a layout (one device)."""
    return x if layout is None else layout.constrain(x, logical)


def data_parallel(devices: Sequence[jax.Device] | None = None) -> Layout:
    """Every device on the `data` axis, parameters replicated: the evaluator's default layout."""
    return Layout(make_mesh(data=-1, devices=devices))
