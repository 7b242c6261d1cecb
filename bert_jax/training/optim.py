"""The optimizer: global-norm clipping, then AdamW (or LAMB) with no decay on LayerNorm and biases, under a linear
warmup and linear decay across the whole run (both sequence-length phases share one schedule).

The original's `AdamWeightDecayOptimizer` omits Adam's bias correction; optax's `adamw` (like transformers' and NVIDIA's
BERT) applies it. With 10k warmup steps the two differ only in the first few hundred steps.
"""

from __future__ import annotations

import jax
import optax

from bert_jax.errors import ConfigError

# Parameters excluded from weight decay, as the original's `exclude_from_weight_decay` (LayerNorm, bias): LayerNorm
# scales by name, and every parameter whose name ends in "bias" (a head's output bias is named e.g. `*_bias`).
NO_DECAY_NAMES = ("scale",)
NO_DECAY_SUFFIX = "bias"


def learning_rate_schedule(optimizer_config, train_steps: int) -> optax.Schedule:
    warmup = int(optimizer_config.warmup_steps)
    peak = float(optimizer_config.learning_rate)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, max(warmup, 1)),
            optax.linear_schedule(peak, float(optimizer_config.end_learning_rate), max(train_steps - warmup, 1)),
        ],
        boundaries=[warmup],
    )


def decay_mask(params):
    """True where weight decay applies: kernels and embeddings, not LayerNorm scales/biases or any bias."""

    def decays(path, _):
        # The parameter's name is the last dict key (nnx.State paths end in the Variable's `.value` attribute).
        names = [entry.key for entry in path if isinstance(entry, jax.tree_util.DictKey)]
        return names[-1] not in NO_DECAY_NAMES and not names[-1].endswith(NO_DECAY_SUFFIX)

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(optimizer_config, schedule: optax.Schedule) -> optax.GradientTransformation:
    """The optimizer under `schedule` (`learning_rate_schedule`, built once per run and shared with the step's
    logged learning rate)."""
    common = dict(
        learning_rate=schedule,
        b1=optimizer_config.b1,
        b2=optimizer_config.b2,
        eps=optimizer_config.eps,
        weight_decay=optimizer_config.weight_decay,
        mask=decay_mask,
    )
    if optimizer_config.name == "adamw":
        optimizer = optax.adamw(**common)
    elif optimizer_config.name == "lamb":
        optimizer = optax.lamb(**common)
    else:
        raise ConfigError(f"optimizer.name {optimizer_config.name!r} is not supported; use 'adamw' or 'lamb'")
    if optimizer_config.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(optimizer_config.grad_clip_norm), optimizer)
    return optimizer
