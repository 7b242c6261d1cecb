"""The pure train and eval steps: the only code that runs under `jax.jit`. They take the objective (loss, sums) and
the model's graph definition; they name neither.

Dropout keys are `fold_in(key(seed), step)`, so a resumed run draws exactly the keys an uninterrupted one would.
Gradient accumulation splits the global batch into micro-batches and normalises every micro-batch loss by the
objective's counts of the whole batch (`Objective.denominators`), so the accumulated gradient equals the full-batch
gradient (not an average of averages). A step whose loss or gradient norm is not finite leaves parameters and
optimizer state unchanged and extends `nonfinite_streak`, which the trainer watches.

Step metrics are one flat dict: the objective's sums plus `loss`, `grad_norm`, `learning_rate`, `nonfinite` and
`nonfinite_streak` (`CORE_METRICS`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bert_jax.training import sharding
from bert_jax.training.rules import DEFAULT_RULES
from bert_jax.training.state import TrainState

# Metrics every train step reports besides the objective's sums; of these, `loss` and `grad_norm` are summed over a
# log interval like the sums, the rest are read as they are.
CORE_METRICS = ("loss", "grad_norm", "learning_rate", "nonfinite", "nonfinite_streak")
# The eval step's count of real (not padding) examples, beside the objective's sums.
EVAL_EXAMPLES = "eval_examples"


def _forward(objective, graphdef, params, batch, frozen, *, deterministic, dropout_key=None):
    """The model's outputs. `frozen`: (graphdef, params) of the frozen model (a teacher), which no gradient
    reaches, or None."""
    model = nnx.merge(graphdef, params)
    rngs = None if deterministic else nnx.Rngs(dropout=dropout_key)
    frozen_model = None if frozen is None else nnx.merge(frozen[0], jax.lax.stop_gradient(frozen[1]))
    return objective.forward(model, batch, deterministic=deterministic, rngs=rngs, frozen=frozen_model)


def _sums(objective, graphdef, params, batch, frozen, *, deterministic, dropout_key=None):
    outputs = _forward(objective, graphdef, params, batch, frozen, deterministic=deterministic,
                       dropout_key=dropout_key)
    return objective.sums(outputs, batch)


def _frozen(frozen_graphdef, frozen_params):
    return None if frozen_graphdef is None else (frozen_graphdef, frozen_params)


def _split_micro_batches(batch, num_micro_batches: int):
    """[B, ...] -> [k, B/k, ...] taking every k-th row, so each device's rows stay on that device."""

    def split(x):
        b = x.shape[0]
        if b % num_micro_batches:
            raise ValueError(f"batch {b} is not divisible by optimizer.grad_accum_steps={num_micro_batches}")
        x = x.reshape(b // num_micro_batches, num_micro_batches, *x.shape[1:])
        return jnp.moveaxis(x, 1, 0)

    return jax.tree.map(split, batch)


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    frozen_params=None,
    *,
    graphdef,
    objective,
    frozen_graphdef=None,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    seed: int,
    grad_accum_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
    step_key = jax.random.fold_in(jax.random.key(seed), state.step)
    denominators = objective.denominators(batch)
    frozen = _frozen(frozen_graphdef, frozen_params)

    def loss_fn(params, micro_batch, dropout_key):
        sums = _sums(objective, graphdef, params, micro_batch, frozen, deterministic=False, dropout_key=dropout_key)
        return objective.loss(sums, denominators), sums

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if grad_accum_steps == 1:
        (loss, sums), grads = grad_fn(state.params, batch, step_key)
    else:
        micro_batches = _split_micro_batches(batch, grad_accum_steps)

        def accumulate(carry, inputs):
            index, micro_batch = inputs
            micro = grad_fn(state.params, micro_batch, jax.random.fold_in(step_key, index))
            return jax.tree.map(jnp.add, carry, micro), None

        first = jax.tree.map(lambda x: x[0], micro_batches)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(grad_fn, state.params, first, step_key))
        ((loss, sums), grads), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(grad_accum_steps), micro_batches))

    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def apply_update(params, opt_state):
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_opt_state

    # A cond, not a per-leaf `where(finite, new, old)`: with the state donated, the `where` makes XLA copy the old
    # Adam moments before overwriting them (~200 copy ops and 54 MiB of temporaries on the small config).
    new_params, new_opt_state = jax.lax.cond(
        finite, apply_update, lambda params, opt_state: (params, opt_state), state.params, state.opt_state
    )
    new_state = TrainState(
        step=state.step + 1,
        params=new_params,
        opt_state=new_opt_state,
        nonfinite_streak=jnp.where(finite, 0, state.nonfinite_streak + 1).astype(jnp.int32),
    )
    collisions = set(sums) & set(CORE_METRICS)
    if collisions:
        raise ValueError(f"objective {objective.name!r} names sums {sorted(collisions)}, which the core reports")
    metrics = dict(
        sums,
        loss=loss,
        grad_norm=grad_norm,
        learning_rate=schedule(state.step),
        nonfinite=(~finite).astype(jnp.int32),
        nonfinite_streak=new_state.nonfinite_streak,
    )
    return new_state, metrics


def eval_step(params, batch: dict[str, jax.Array], frozen_params=None, *, graphdef, objective,
              frozen_graphdef=None) -> dict[str, jax.Array]:
    """The objective's sums without dropout, and the number of real examples (padded eval examples carry
    `example_weights` 0)."""
    sums = _sums(objective, graphdef, params, batch, _frozen(frozen_graphdef, frozen_params), deterministic=True)
    first = next(iter(batch.values()))
    weights = batch.get("example_weights", jnp.ones(first.shape[:1], jnp.float32))
    return dict(sums, **{EVAL_EXAMPLES: jnp.sum(weights.astype(jnp.float32))})


def predict_step(params, batch: dict[str, jax.Array], frozen_params=None, *, graphdef, objective,
                 frozen_graphdef=None) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The eval step's sums and the objective's per-example predictions (`Objective.predictions`), for metrics of a
    whole split that are not sums (F1, correlations)."""
    outputs = _forward(objective, graphdef, params, batch, _frozen(frozen_graphdef, frozen_params), deterministic=True)
    first = next(iter(batch.values()))
    weights = batch.get("example_weights", jnp.ones(first.shape[:1], jnp.float32))
    sums = dict(objective.sums(outputs, batch), **{EVAL_EXAMPLES: jnp.sum(weights.astype(jnp.float32))})
    return sums, objective.predictions(outputs)


def _frozen_in(frozen_shardings) -> tuple:
    return () if frozen_shardings is None else (frozen_shardings,)


def jit_train_step(*, graphdef, objective, optimizer, schedule, seed: int, grad_accum_steps: int, state_shardings,
                   mesh, rules=DEFAULT_RULES, frozen_graphdef=None, frozen_shardings=None):
    """The train step as it runs everywhere (trainer, benchmark, compile-ahead): `jax.jit` of `(state, batch)`, or
    `(state, batch, frozen_params)` for an objective with a frozen model, with the state's shardings in and out,
    the batch split over the data axes, the frozen parameters on their own shardings, metrics replicated, and the
    old state donated."""
    step = functools.partial(
        train_step, graphdef=graphdef, objective=objective, optimizer=optimizer, schedule=schedule, seed=seed,
        grad_accum_steps=grad_accum_steps, frozen_graphdef=frozen_graphdef,
    )
    return jax.jit(
        step,
        in_shardings=(state_shardings, sharding.batch_shardings(mesh, rules), *_frozen_in(frozen_shardings)),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )


def jit_eval_step(*, graphdef, objective, param_shardings, mesh, rules=DEFAULT_RULES, frozen_graphdef=None,
                  frozen_shardings=None, step=eval_step):
    """The eval step (or `step=predict_step`) jitted with the parameters' shardings, the batch split over the data
    axes and the outputs replicated (every host reads all of them)."""
    return jax.jit(
        functools.partial(step, graphdef=graphdef, objective=objective, frozen_graphdef=frozen_graphdef),
        in_shardings=(param_shardings, sharding.batch_shardings(mesh, rules), *_frozen_in(frozen_shardings)),
        out_shardings=sharding.replicated(mesh),
    )
