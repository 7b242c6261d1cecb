"""The one setup path: mesh -> objective and model -> schedule and optimizer -> sharded state -> jitted steps. The
trainer, the benchmark and compile-ahead all start here, so what they run or measure is the same step.

The state exists first only as shapes with shardings (`Setup.abstract_state`); `init_state()` materialises a fresh
one, a restore fills it from a checkpoint instead, and compile-ahead (whose devices are a TPU topology described on a
CPU) never materialises it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from bert_jax import models, objectives
from bert_jax.errors import ConfigError
from bert_jax.objectives.base import BatchShape, Objective
from bert_jax.training import optim, sharding, state, step
from bert_jax.training.rules import merge_rules


@dataclasses.dataclass
class Setup:
    """Everything a run needs before its first batch, built once from the config."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    rules: tuple  # the logical-axis rules in force (defaults with config.mesh.rules applied)
    objective: Objective
    model_config: Any  # the architecture's config, "auto" speed levers resolved for the mesh's platform
    make_model: Callable  # make(rngs) -> the model with the objective's heads
    schedule: optax.Schedule
    optimizer: optax.GradientTransformation
    graphdef: Any
    abstract_state: state.TrainState  # ShapeDtypeStructs carrying their shardings
    shardings: state.TrainState
    train_step: Any  # jitted (state, batch) -> (state, metrics)
    eval_step: Any  # jitted (params, batch) -> sums

    def init_state(self) -> state.TrainState:
        """A fresh state from `config.seed`, created directly on its shardings."""
        return state.init_state(self.make_model, self.optimizer, self.shardings, self.config.seed)

    def batch_shape(self, seq_len: int, max_predictions: int) -> BatchShape:
        return BatchShape(self.config.batch_size, seq_len, max_predictions)

    def abstract_batch(self, shape: BatchShape) -> dict[str, jax.ShapeDtypeStruct]:
        """The objective's batch contract at `shape`, as sharded shapes (to compile ahead of data)."""
        return sharding.abstract_batch(self.objective.batch_contract(shape), self.mesh, self.rules)

    def global_batch(self, host_batch) -> dict[str, jax.Array]:
        """This host's loader batch as the global batch of the objective's fields, placed on the mesh."""
        return sharding.global_batch(self.objective.host_batch(host_batch), self.mesh, self.rules)

    def flops_per_token(self, shape: BatchShape) -> float:
        return self.objective.flops_per_token(self.model_config, shape)


def check_batch_divides(config, mesh: Mesh, rules) -> None:
    """The global batch splits evenly over the data-parallel devices and the micro-batches."""
    ways = math.prod(mesh.shape[axis] for axis in sharding.batch_axes(mesh, rules))
    accum = config.optimizer.grad_accum_steps
    if config.batch_size % (ways * accum):
        raise ConfigError(
            f"batch_size {config.batch_size} must be divisible by the data-parallel ways ({ways}, the mesh axes "
            f"{sharding.batch_axes(mesh, rules)} of the batch rule) times optimizer.grad_accum_steps ({accum})"
        )


def build(config: ml_collections.ConfigDict, devices=None) -> Setup:
    """Builds the run's machinery on `devices` (default: all of JAX's devices) without allocating the state."""
    devices = jax.devices() if devices is None else list(devices)
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = merge_rules(config.mesh.rules)
    check_batch_divides(config, mesh, rules)
    objective = objectives.create(config.objective)
    model_config = models.resolve_speed_levers(models.model_config(config.model), devices[0].platform)
    if tuple(objective.heads) not in models.model_heads(model_config):
        raise ConfigError(
            f"objective {config.objective!r} reads the heads {tuple(objective.heads)}, and model.model_type "
            f"{model_config.model_type!r} has models with {list(models.model_heads(model_config))} only: choose "
            "another objective or model"
        )
    make_model = models.constructor(model_config, objective.heads)
    schedule = optim.learning_rate_schedule(config.optimizer, config.train_steps)
    optimizer = optim.make_optimizer(config.optimizer, schedule)
    graphdef, abstract_state, shardings = state.abstract_sharded_state(make_model, optimizer, mesh, config.seed, rules)
    train_step = step.jit_train_step(
        graphdef=graphdef, objective=objective, optimizer=optimizer, schedule=schedule, seed=config.seed,
        grad_accum_steps=config.optimizer.grad_accum_steps, state_shardings=shardings, mesh=mesh, rules=rules,
    )
    eval_step = step.jit_eval_step(graphdef=graphdef, objective=objective, param_shardings=shardings.params,
                                   mesh=mesh, rules=rules)
    return Setup(config, mesh, rules, objective, model_config, make_model, schedule, optimizer, graphdef,
                 abstract_state, shardings, train_step, eval_step)
