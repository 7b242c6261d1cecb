"""The pure train and eval steps: the only code that runs under `jax.jit`.

Dropout keys are `fold_in(key(seed), step)`, so a resumed run draws exactly the keys an uninterrupted one would.
Gradient accumulation splits the global batch into micro-batches and normalises every micro-batch loss by the counts
of the whole batch, so the accumulated gradient equals the full-batch gradient (not an average of averages).
A step whose loss or gradient norm is not finite leaves parameters and optimizer state unchanged and extends
`nonfinite_streak`, which the trainer watches.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bert_jax import losses

MODEL_INPUTS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken (non-finite steps included)
    params: Any  # nnx.State of the model's parameters (f32 master weights)
    opt_state: Any  # optax state
    nonfinite_streak: jax.Array  # int32 scalar: consecutive non-finite steps just before this one


def _forward_sums(graphdef, params, batch, *, deterministic, dropout_key=None):
    model = nnx.merge(graphdef, params)
    rngs = None if deterministic else nnx.Rngs(dropout=dropout_key)
    outputs = model(*(batch[name] for name in MODEL_INPUTS), deterministic=deterministic, rngs=rngs)
    return losses.pretraining_sums(outputs, batch)


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
    *,
    graphdef,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    seed: int,
    grad_accum_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
    step_key = jax.random.fold_in(jax.random.key(seed), state.step)
    mlm_norm = jnp.maximum(jnp.sum(batch["masked_lm_weights"].astype(jnp.float32)), 1.0)
    nsp_norm = jnp.asarray(batch["next_sentence_labels"].shape[0], jnp.float32)

    def loss_fn(params, micro_batch, dropout_key):
        sums = _forward_sums(graphdef, params, micro_batch, deterministic=False, dropout_key=dropout_key)
        return sums["mlm_loss_sum"] / mlm_norm + sums["nsp_loss_sum"] / nsp_norm, sums

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if grad_accum_steps == 1:
        (loss, sums), grads = grad_fn(state.params, batch, step_key)
    else:
        micro_batches = _split_micro_batches(batch, grad_accum_steps)

        def accumulate(carry, inputs):
            index, micro_batch = inputs
            (micro_loss, micro_sums), micro_grads = grad_fn(state.params, micro_batch, jax.random.fold_in(step_key, index))
            return jax.tree.map(jnp.add, carry, (micro_loss, micro_sums, micro_grads)), None

        zeros = (jnp.zeros((), jnp.float32), _zero_sums(), jax.tree.map(jnp.zeros_like, state.params))
        (loss, sums, grads), _ = jax.lax.scan(
            accumulate, zeros, (jnp.arange(grad_accum_steps), micro_batches)
        )

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
    metrics = dict(
        sums,
        loss=loss,
        grad_norm=grad_norm,
        learning_rate=schedule(state.step),
        nonfinite=(~finite).astype(jnp.int32),
        nonfinite_streak=new_state.nonfinite_streak,
    )
    return new_state, metrics


def _zero_sums():
    names = ("mlm_loss_sum", "mlm_correct_sum", "mlm_count", "nsp_loss_sum", "nsp_correct_sum", "nsp_count")
    return {name: jnp.zeros((), jnp.float32) for name in names}


def eval_step(params, batch: dict[str, jax.Array], *, graphdef) -> dict[str, jax.Array]:
    """Sums and counts of both heads without dropout; padded eval examples carry `example_weights` 0."""
    return _forward_sums(graphdef, params, batch, deterministic=True)


def jit_train_step(*, graphdef, optimizer, schedule, seed: int, grad_accum_steps: int, state_shardings, mesh):
    """The train step as it runs everywhere (trainer, benchmark, compile-ahead): `jax.jit` with the state's
    shardings in and out, the batch split over the data axes, metrics replicated, and the old state donated."""
    from bert_jax import sharding  # local: steps stays importable without mesh helpers

    step = functools.partial(
        train_step, graphdef=graphdef, optimizer=optimizer, schedule=schedule, seed=seed,
        grad_accum_steps=grad_accum_steps,
    )
    return jax.jit(
        step,
        in_shardings=(state_shardings, sharding.batch_shardings(mesh)),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )


def jit_eval_step(*, graphdef, param_shardings, mesh):
    from bert_jax import sharding

    return jax.jit(
        functools.partial(eval_step, graphdef=graphdef),
        in_shardings=(param_shardings, sharding.batch_shardings(mesh)),
        out_shardings=sharding.replicated(mesh),
    )
