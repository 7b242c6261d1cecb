"""The train state and its sharded creation: shapes through `jax.eval_shape`, shardings from the rules, then one
jitted init with `out_shardings`, so nothing is materialised on one device and scattered (as nanodo does). The model
arrives as a constructor (`make(rngs) -> nnx.Module`); this module knows no architecture or objective."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from bert_jax.training import sharding
from bert_jax.training.rules import DEFAULT_RULES


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken (non-finite steps included)
    params: Any  # nnx.State of the model's parameters (f32 master weights)
    opt_state: Any  # optax state
    nonfinite_streak: jax.Array  # int32 scalar: consecutive non-finite steps just before this one


def abstract_sharded_state(make_model: Callable, optimizer, mesh: Mesh, seed: int, rules=DEFAULT_RULES):
    """The train state as `jax.ShapeDtypeStruct`s carrying their shardings, allocating nothing (the mesh may be made
    of compile-only devices, e.g. a TPU topology described on a CPU). Returns (graphdef, abstract_state, shardings)."""
    abstract_model = nnx.eval_shape(lambda: make_model(nnx.Rngs(seed)))
    graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
    param_shardings = sharding.state_shardings(abstract_params, mesh, rules)
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    shapes = TrainState(step=scalar, params=abstract_params, opt_state=jax.eval_shape(optimizer.init, abstract_params),
                        nonfinite_streak=scalar)
    shardings = TrainState(
        step=sharding.replicated(mesh),
        params=param_shardings,
        opt_state=sharding.like_params(shapes.opt_state, abstract_params, param_shardings, mesh),
        nonfinite_streak=sharding.replicated(mesh),
    )
    abstract_state = jax.tree.map(
        lambda leaf, leaf_sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf_sharding),
        shapes, shardings,
    )
    return graphdef, abstract_state, shardings


def init_state(make_model: Callable, optimizer, shardings, seed: int, init_params: Callable | None = None,
               frozen_params=None, initial_params=None) -> TrainState:
    """A fresh train state created directly in its sharded layout (`shardings` from `abstract_sharded_state`).
    `init_params(params, frozen_params)`, when given, makes the initial parameters from the fresh ones and a frozen
    model's (a student from its teacher), inside the same jitted init. `initial_params` (host arrays of the same
    tree: a pre-trained model's) replace the fresh parameters."""

    def create(frozen_params, initial_params):
        if initial_params is not None:
            params = jax.tree.map(lambda x: x, initial_params)
        else:
            _, params = nnx.split(make_model(nnx.Rngs(seed)), nnx.Param)
        if init_params is not None:
            params = init_params(params, frozen_params)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            nonfinite_streak=jnp.zeros((), jnp.int32),
        )

    return jax.jit(create, out_shardings=shardings)(frozen_params, initial_params)


def init_sharded_state(make_model: Callable, optimizer, mesh: Mesh, seed: int, rules=DEFAULT_RULES):
    """`abstract_sharded_state` then `init_state`. Returns (graphdef, state, state_shardings)."""
    graphdef, _, shardings = abstract_sharded_state(make_model, optimizer, mesh, seed, rules)
    return graphdef, init_state(make_model, optimizer, shardings, seed), shardings
