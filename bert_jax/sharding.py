"""The device mesh, the logical-axis rules table, and the shardings of parameters, optimizer state and batches.

Model code names logical axes only (`logical_axes` metadata on every parameter); this table is the one place that
says which mesh axis each of them is split over. Data parallelism uses `fsdp` and `data` for the batch; `fsdp` also
splits parameters and optimizer state (ZeRO-3 style), `tensor` splits heads, the MLP and the vocabulary.

The batch is split over (`fsdp`, `data`) in that order, `fsdp` major, on purpose: XLA's SPMD partitioner (jax/jaxlib
0.10.2) permutes rows of a dot whose left operand's rows are split over two mesh axes when the right operand's output
dimension is split over the *minor* one of them and the contraction over a third (`scripts/repro_fsdp_tensor.py`).
Parameters only ever use `fsdp` and `tensor`, so with `fsdp` major no weight can meet that pattern.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("fsdp", "data")),  # fsdp major: see the module docstring before reordering
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("hidden", "tensor"),
)


class MeshError(ValueError):
    """A mesh that does not fit the devices; the message names the config fields."""


def mesh_shape(sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
    """Resolves -1 ("the rest") and checks the product equals the number of devices."""
    shape = [int(sizes[axis]) for axis in MESH_AXES]
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise MeshError(
                f"mesh {dict(zip(MESH_AXES, shape))}: {num_devices} devices are not divisible by the fixed axes "
                f"({known}); change config.mesh"
            )
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise MeshError(
            f"mesh {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices but {num_devices} are available; "
            "set config.mesh.data=-1 to use all of them, or match the slice size"
        )
    return tuple(shape)


def make_mesh(sizes: dict[str, int], devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    shape = mesh_shape(sizes, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def logical_to_spec(logical_axes, shape, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> PartitionSpec:
    """Maps logical names to mesh axes; a dimension the mesh axis does not divide, or whose mesh axis an earlier
    dimension already took, stays replicated."""
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name, size in zip(logical_axes or (None,) * len(shape), shape):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        ways = math.prod(mesh.shape[a] for a in axes)
        if not axes or size % ways:
            spec.append(None)
            continue
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def state_shardings(abstract_state, mesh: Mesh):
    """NamedShardings for an `nnx.State` (of parameters) from each variable's `logical_axes` metadata."""

    def one(variable):
        if isinstance(variable, nnx.Variable):
            value = variable.get_value()
            axes = variable.get_metadata().get("logical_axes")
            return variable.replace(NamedSharding(mesh, logical_to_spec(axes, value.shape, mesh)))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def like_params(abstract_tree, abstract_params, param_shardings, mesh: Mesh):
    """Shardings for a pytree (optimizer state) whose parameter-shaped parts mirror the parameters.

    A leaf whose key path ends with a parameter's path and has its shape (Adam's moments) gets that parameter's
    sharding; everything else (step counts, scalars) is replicated.
    """
    param_paths = {}
    flat_params = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    for (path, leaf), sharding in zip(flat_params, jax.tree.leaves(param_shardings)):
        param_paths[tuple(path)] = (leaf.shape, sharding)
    replicated = NamedSharding(mesh, PartitionSpec())

    def one(path, leaf):
        path = tuple(path)
        for start in range(len(path)):
            match = param_paths.get(path[start:])
            if match is not None and match[0] == getattr(leaf, "shape", None):
                return match[1]
        return replicated

    return jax.tree_util.tree_map_with_path(one, abstract_tree)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Batches are split over every data-parallel axis on their first dimension."""
    batch_axes = tuple(a for a in dict(LOGICAL_AXIS_RULES)["batch"] if mesh.shape[a] > 1) or None
    return NamedSharding(mesh, PartitionSpec(batch_axes, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


# Every batch field is split over the data axes on its first dimension, whatever its rank; a prefix PartitionSpec
# covers [B], [B, S] and [B, P] alike, so one sharding serves any batch dict (train batches and eval batches, which
# add `example_weights`).
def batch_shardings(mesh: Mesh) -> NamedSharding:
    return batch_sharding(mesh, 1)


def abstract_batch(batch_size: int, seq_len: int, max_predictions: int, mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch contract as sharded `ShapeDtypeStruct`s: what the step is compiled for ahead of data."""
    fields = {
        "input_ids": ((batch_size, seq_len), jnp.int32),
        "input_mask": ((batch_size, seq_len), jnp.int32),
        "segment_ids": ((batch_size, seq_len), jnp.int32),
        "masked_lm_positions": ((batch_size, max_predictions), jnp.int32),
        "masked_lm_ids": ((batch_size, max_predictions), jnp.int32),
        "masked_lm_weights": ((batch_size, max_predictions), jnp.float32),
        "next_sentence_labels": ((batch_size,), jnp.int32),
    }
    return {
        name: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding(mesh, len(shape)))
        for name, (shape, dtype) in fields.items()
    }


def global_batch(host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles the global batch from this host's slice (every host passes its own rows)."""
    return {
        name: jax.make_array_from_process_local_data(batch_sharding(mesh, value.ndim), value)
        for name, value in host_batch.items()
    }


def abstract_sharded_state(model_config, optimizer, mesh: Mesh, seed: int):
    """The train state as `jax.ShapeDtypeStruct`s carrying their shardings, allocating nothing (the mesh may be made
    of compile-only devices, e.g. a TPU topology described on a CPU). Returns (graphdef, abstract_state, shardings)."""
    from bert_jax.model import BertForPreTraining  # local: keep this module importable without the model
    from bert_jax.steps import TrainState

    abstract_model = nnx.eval_shape(lambda: BertForPreTraining(model_config, rngs=nnx.Rngs(seed)))
    graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
    param_shardings = state_shardings(abstract_params, mesh)
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    shapes = TrainState(step=scalar, params=abstract_params, opt_state=jax.eval_shape(optimizer.init, abstract_params),
                        nonfinite_streak=scalar)
    shardings = TrainState(
        step=replicated(mesh),
        params=param_shardings,
        opt_state=like_params(shapes.opt_state, abstract_params, param_shardings, mesh),
        nonfinite_streak=replicated(mesh),
    )
    abstract_state = jax.tree.map(
        lambda leaf, leaf_sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf_sharding),
        shapes, shardings,
    )
    return graphdef, abstract_state, shardings


def init_sharded_state(model_config, optimizer, mesh: Mesh, seed: int):
    """Creates the train state directly in its sharded layout: shapes via `jax.eval_shape`, shardings from the rules,
    then one jitted init with `out_shardings` (nothing is materialised on one device and scattered).

    Returns (graphdef, state, state_shardings).
    """
    from bert_jax.model import BertForPreTraining
    from bert_jax.steps import TrainState

    def create():
        model = BertForPreTraining(model_config, rngs=nnx.Rngs(seed))
        _, params = nnx.split(model, nnx.Param)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            nonfinite_streak=jnp.zeros((), jnp.int32),
        )

    graphdef, _, shardings = abstract_sharded_state(model_config, optimizer, mesh, seed)
    state = jax.jit(create, out_shardings=shardings)()
    return graphdef, state, shardings
