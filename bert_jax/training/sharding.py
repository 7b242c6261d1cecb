"""The device mesh and the shardings of parameters, optimizer state and batches, from the logical-axis rules
(`rules.py`). A rule that cannot split a parameter is an error naming the parameter, never a silent replication:
replication happens only where the rules (the config) say so."""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from bert_jax.errors import MeshError
from bert_jax.training.rules import DEFAULT_RULES, MESH_AXES, mesh_axes_for, mesh_shape


def make_mesh(sizes: Mapping[str, int], devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    shape = mesh_shape(sizes, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def _fix_hint(logical_axis: str, size: int, ways: int) -> str:
    padded = -(-size // ways) * ways
    hint = f"make that size a multiple of {ways} (e.g. {padded})"
    if logical_axis == "vocab":
        hint = f"pad the vocabulary: --config.model.vocab_size={padded} (unused ids are never predicted)"
    return (f"{hint}; or change the mesh; or replicate it with --config.mesh.rules=\"[('{logical_axis}', None)]\"")


def logical_to_spec(logical_axes, shape, mesh: Mesh, rules=DEFAULT_RULES, name: str = "array") -> PartitionSpec:
    """Maps a parameter's logical axis names to mesh axes through the rules. Mesh axes of size 1 are dropped; a
    mesh axis that does not divide its dimension, or that two dimensions would share, is a `MeshError`."""
    spec, used = [], {}
    for dim, (logical, size) in enumerate(zip(logical_axes or (None,) * len(shape), shape)):
        axes = tuple(a for a in mesh_axes_for(logical, rules) if mesh.shape[a] > 1)
        ways = math.prod(mesh.shape[a] for a in axes)
        if axes and size % ways:
            rule = (logical, axes[0] if len(axes) == 1 else axes)
            raise MeshError(
                f"{name} of shape {tuple(shape)}: the rule {rule!r} splits dimension {dim} ({size}) {ways} ways over "
                f"mesh axes {dict((a, mesh.shape[a]) for a in axes)}, which does not divide it. Fix: "
                + _fix_hint(logical, size, ways)
            )
        for axis in axes:
            if axis in used:
                raise MeshError(
                    f"{name} of shape {tuple(shape)}: the rules split both its dimension {used[axis]} and dimension "
                    f"{dim} ('{logical}') over mesh axis '{axis}', which can split one dimension only; change "
                    "config.mesh.rules"
                )
            used[axis] = dim
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def _path_name(path) -> str:
    return "/".join(str(getattr(entry, "key", getattr(entry, "idx", entry))) for entry in path)


def state_shardings(abstract_state, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings for an `nnx.State` (of parameters) from each variable's `logical_axes` metadata."""

    def one(path, variable):
        if isinstance(variable, nnx.Variable):
            value = variable.get_value()
            axes = variable.get_metadata().get("logical_axes")
            spec = logical_to_spec(axes, value.shape, mesh, rules, name=f"parameter {_path_name(path)}")
            return variable.replace(NamedSharding(mesh, spec))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def like_params(abstract_tree, abstract_params, param_shardings, mesh: Mesh):
    """Shardings for a pytree (optimizer state) whose parameter-shaped parts mirror the parameters.

    A leaf whose key path ends with a parameter's path and has its shape (Adam's moments) gets that parameter's
    sharding; everything else (step counts, scalars) is replicated.
    """
    param_paths = {}
    flat_params = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    for (path, leaf), sharding in zip(flat_params, jax.tree.leaves(param_shardings)):
        param_paths[tuple(path)] = (leaf.shape, sharding)

    def one(path, leaf):
        path = tuple(path)
        for start in range(len(path)):
            match = param_paths.get(path[start:])
            if match is not None and match[0] == getattr(leaf, "shape", None):
                return match[1]
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(one, abstract_tree)


def batch_axes(mesh: Mesh, rules=DEFAULT_RULES) -> tuple[str, ...]:
    """The mesh axes (of size > 1) a batch's first dimension is split over."""
    return tuple(a for a in mesh_axes_for("batch", rules) if mesh.shape[a] > 1)


def batch_sharding(mesh: Mesh, ndim: int, rules=DEFAULT_RULES) -> NamedSharding:
    """Batches are split over every data-parallel axis on their first dimension."""
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh, rules) or None, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


# Every batch field is split over the data axes on its first dimension, whatever its rank; a prefix PartitionSpec
# covers [B], [B, S] and [B, P] alike, so one sharding serves any batch dict (train batches and eval batches, which
# add `example_weights`).
def batch_shardings(mesh: Mesh, rules=DEFAULT_RULES) -> NamedSharding:
    return batch_sharding(mesh, 1, rules)


def abstract_batch(contract: Mapping[str, tuple[tuple[int, ...], Any]], mesh: Mesh,
                   rules=DEFAULT_RULES) -> dict[str, jax.ShapeDtypeStruct]:
    """An objective's batch contract (field -> (shape, dtype)) as sharded `ShapeDtypeStruct`s: what the step is
    compiled for ahead of data."""
    return {
        name: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding(mesh, len(shape), rules))
        for name, (shape, dtype) in contract.items()
    }


def global_batch(host_batch: Mapping[str, np.ndarray], mesh: Mesh, rules=DEFAULT_RULES) -> dict[str, jax.Array]:
    """Assembles the global batch from this host's slice (every host passes its own rows)."""
    return {
        name: jax.make_array_from_process_local_data(batch_sharding(mesh, value.ndim, rules), value)
        for name, value in host_batch.items()
    }
