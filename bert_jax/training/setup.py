"""The one setup path: mesh -> objective and model -> schedule and optimizer -> sharded state -> jitted steps. The
trainer, the benchmark and compile-ahead all start here, so what they run or measure is the same step.

The state exists first only as shapes with shardings (`Setup.abstract_state`); `init_state()` materialises a fresh
one, a restore fills it from a checkpoint instead, and compile-ahead (whose devices are a TPU topology described on a
CPU) never materialises it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
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
    train_step: Any  # jitted (state, batch, frozen_params) -> (state, metrics)
    eval_step: Any  # jitted (params, batch, frozen_params) -> sums
    frozen: Frozen | None = None  # the objective's frozen model (a teacher), on the mesh

    @property
    def frozen_params(self):
        """The frozen model's parameters on the mesh, or None."""
        return None if self.frozen is None else self.frozen.params

    @property
    def frozen_args(self) -> tuple:
        """The steps' arguments after (state, batch): the frozen parameters where the objective has a frozen model."""
        return () if self.frozen is None else (self.frozen.params,)

    def init_state(self) -> state.TrainState:
        """A fresh state from `config.seed`, created directly on its shardings (from the frozen model's parameters
        where the objective initialises from them, or from the trained parameters it starts from)."""
        initial = self.objective.initial_params(self.make_model, self.config.seed)
        if initial is not None:
            _check_same_tree(self.abstract_state.params, initial, "the tree of initial (pre-trained) parameters")
            # Each device receives only its shard of the host arrays: no device ever holds the whole tree.
            initial = jax.device_put(initial, self.shardings.params)
        return state.init_state(self.make_model, self.optimizer, self.shardings, self.config.seed,
                                init_params=self.objective.init_params, frozen_params=self.frozen_params,
                                initial_params=initial)

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


@dataclasses.dataclass
class Frozen:
    """A frozen model placed on the mesh: what `Objective.frozen_spec` describes, loaded once per run."""

    graphdef: Any
    params: Any  # on the mesh (ShapeDtypeStructs with shardings when not materialised)
    shardings: Any
    fingerprint: str  # a hash of the parameters: a resumed run checks that it reads the same frozen model
    description: str


def fingerprint(host_params) -> str:
    """A content hash of a parameter tree (its paths, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(host_params)[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}:{array.shape}:{array.dtype}".encode())
        digest.update(array.reshape(-1).view(np.uint8))  # any dtype (bfloat16 has no buffer format)
    return digest.hexdigest()


def place_frozen(spec, mesh: Mesh, rules, materialize: bool = True) -> Frozen:
    """Shards the frozen model over the mesh by the same rules as the trained one (fsdp splits a large teacher)
    and, unless only its shapes are wanted (compile-ahead), loads and places its parameters."""
    graphdef, abstract_params = nnx.split(nnx.eval_shape(lambda: spec.make_model(nnx.Rngs(0))), nnx.Param)
    shardings = sharding.state_shardings(abstract_params, mesh, rules)
    if not materialize:
        params = jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
                              abstract_params, shardings)
        return Frozen(graphdef, params, shardings, "", spec.description)
    host_params = spec.load_params()
    _check_same_tree(abstract_params, host_params, f"the frozen model from {spec.description}")
    params = jax.jit(lambda tree: tree, out_shardings=shardings)(host_params)
    return Frozen(graphdef, params, shardings, fingerprint(host_params), spec.description)


def _check_same_tree(abstract_params, host_params, what: str) -> None:
    shapes = [(leaf.shape, np.dtype(leaf.dtype)) for leaf in jax.tree.leaves(abstract_params)]
    loaded = [(np.shape(leaf), np.asarray(leaf).dtype) for leaf in jax.tree.leaves(host_params)]
    if jax.tree.structure(abstract_params) != jax.tree.structure(host_params) or shapes != loaded:
        raise ConfigError(f"{what} does not match its own config's shapes")


def check_batch_divides(config, mesh: Mesh, rules) -> None:
    """The global batch splits evenly over the data-parallel devices and the micro-batches."""
    ways = math.prod(mesh.shape[axis] for axis in sharding.batch_axes(mesh, rules))
    accum = config.optimizer.grad_accum_steps
    if config.batch_size % (ways * accum):
        raise ConfigError(
            f"batch_size {config.batch_size} must be divisible by the data-parallel ways ({ways}, the mesh axes "
            f"{sharding.batch_axes(mesh, rules)} of the batch rule) times optimizer.grad_accum_steps ({accum})"
        )


def build(config: ml_collections.ConfigDict, devices=None, *, load_frozen: bool = True) -> Setup:
    """Builds the run's machinery on `devices` (default: all of JAX's devices) without allocating the state. An
    objective's frozen model (a teacher) is loaded onto the mesh, or with `load_frozen=False` (compile-ahead) only
    described by its shapes."""
    devices = jax.devices() if devices is None else list(devices)
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = merge_rules(config.mesh.rules)
    check_batch_divides(config, mesh, rules)
    objective = objectives.create(config.objective, config)
    objective.complete_config(config)  # e.g. the architecture of the model the run continues from
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
    spec = objective.frozen_spec()
    frozen = None if spec is None else place_frozen(spec, mesh, rules, materialize=load_frozen)
    frozen_graph = dict(frozen_graphdef=None if frozen is None else frozen.graphdef,
                        frozen_shardings=None if frozen is None else frozen.shardings)
    train_step = step.jit_train_step(
        graphdef=graphdef, objective=objective, optimizer=optimizer, schedule=schedule, seed=config.seed,
        grad_accum_steps=config.optimizer.grad_accum_steps, state_shardings=shardings, mesh=mesh, rules=rules,
        **frozen_graph,
    )
    eval_step = step.jit_eval_step(graphdef=graphdef, objective=objective, param_shardings=shardings.params,
                                   mesh=mesh, rules=rules, **frozen_graph)
    return Setup(config, mesh, rules, objective, model_config, make_model, schedule, optimizer, graphdef,
                 abstract_state, shardings, train_step, eval_step, frozen)
