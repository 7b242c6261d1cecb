"""The mesh's axes and the logical-axis rules table, as plain data: which mesh axis each logical axis is split over.
Pure Python (validating a config imports this, never JAX); `sharding.py` applies it.

Model code names logical axes only (`logical_axes` metadata on every parameter). Data parallelism uses `fsdp` and
`data` for the batch; `fsdp` also splits parameters and optimizer state (ZeRO-3 style), `tensor` splits heads, the
MLP and the vocabulary. `config.mesh.rules` replaces the default rule of the logical axes it names, as flax's lm1b
does with `logical_axis_rules`: `[('vocab', None)]` replicates the vocabulary instead of splitting it.

The batch is split over (`fsdp`, `data`) in that order, `fsdp` major, on purpose: XLA's SPMD partitioner (jax/jaxlib
0.10.2) permutes rows of a dot whose left operand's rows are split over two mesh axes when the right operand's output
dimension is split over the *minor* one of them and the contraction over a third (`scripts/repro_fsdp_tensor.py`,
docs/architecture.md). Parameters only ever use `fsdp` and `tensor`, so with `fsdp` major no weight can meet that
pattern.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from bert_jax.errors import ConfigError, MeshError

MESH_AXES = ("data", "fsdp", "tensor")

DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("fsdp", "data")),  # fsdp major: see the module docstring before reordering
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("hidden", "tensor"),
)


def _targets(target) -> tuple[str, ...]:
    """A rule's right-hand side as a tuple of mesh axes (None = replicated)."""
    if target is None:
        return ()
    return (target,) if isinstance(target, str) else tuple(target)


def merge_rules(overrides: Sequence[Sequence[Any]] = ()) -> tuple[tuple[str, Any], ...]:
    """The default table with `overrides` ((logical axis, mesh axis | [mesh axes] | None) pairs, from
    `config.mesh.rules`) replacing the default rule of each logical axis they name, or adding one."""
    table = dict(DEFAULT_RULES)
    for index, rule in enumerate(overrides):
        if not isinstance(rule, (list, tuple)) or len(rule) != 2 or not isinstance(rule[0], str):
            raise ConfigError(f"mesh.rules[{index}] = {rule!r}: each rule is a pair (logical axis, mesh axis or "
                              "list of mesh axes or None), e.g. ('vocab', None)")
        logical, target = rule
        unknown = [axis for axis in _targets(target) if axis not in MESH_AXES]
        if unknown:
            raise ConfigError(f"mesh.rules[{index}] = {tuple(rule)!r} names mesh axis {unknown[0]!r}; the mesh axes "
                              f"are {list(MESH_AXES)}")
        table[logical] = tuple(target) if isinstance(target, list) else target
    return tuple(table.items())


def check_mesh_sizes(sizes: Mapping[str, int]) -> None:
    """Each of `config.mesh.{data,fsdp,tensor}` is positive or -1 ("the rest"), and at most one is -1."""
    values = [sizes[axis] for axis in MESH_AXES]
    if values.count(-1) > 1 or any(s == 0 or s < -1 for s in values):
        raise ConfigError(f"mesh sizes (data, fsdp, tensor) = {values}: each must be positive, at most one -1")


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Resolves -1 ("the rest") and checks the product equals the number of devices."""
    check_mesh_sizes(sizes)
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


def mesh_axes_for(logical_axis: str | None, rules) -> tuple[str, ...]:
    """The mesh axes the rules split `logical_axis` over (empty: replicated)."""
    return () if logical_axis is None else _targets(dict(rules).get(logical_axis))
