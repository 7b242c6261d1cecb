"""Cross-entropy and accuracy as sums and counts, the pieces objectives are made of.

Sums and counts (not means) add up correctly across devices, micro-batches and logging intervals; an objective
divides once at the end (`Objective.summarize`). Logits are promoted to f32 before the softmax so bf16 compute does
not degrade the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def label_is_top(logits_NxC, labels_N) -> jax.Array:
    """1.0 where the label's logit is the largest, else 0.0.

    Equal to `argmax == label` except on an exact tie for the top logit, where the label counts as correct. A `max`
    is used instead of `argmax` because XLA:CPU lowers argmax over the 30k-wide vocabulary to an unvectorised
    (value, index) reduce: 90 ms of a 2.6 s small-config step against 6 ms for the max (docs/bench_train_step.md).
    """
    label_logit = jnp.take_along_axis(logits_NxC, labels_N[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return (label_logit >= jnp.max(logits_NxC, axis=-1)).astype(jnp.float32)


def classification_sums(prefix: str, logits_NxC, labels_N, weights_N=None) -> dict[str, jax.Array]:
    """`{prefix}_loss_sum`, `{prefix}_correct_sum` and `{prefix}_count` of weighted cross-entropy and accuracy over
    any leading shape; weight 0 marks padding (masked-LM slots, padded eval examples)."""
    logits = logits_NxC.astype(jnp.float32)
    weights = jnp.ones(labels_N.shape, jnp.float32) if weights_N is None else weights_N.astype(jnp.float32)
    xent_N = optax.softmax_cross_entropy_with_integer_labels(logits, labels_N)
    correct_N = label_is_top(logits, labels_N)
    return {
        f"{prefix}_loss_sum": jnp.sum(xent_N * weights),
        f"{prefix}_correct_sum": jnp.sum(correct_N * weights),
        f"{prefix}_count": jnp.sum(weights),
    }


def summarize_classification(sums, prefixes: tuple[str, ...]) -> dict[str, float]:
    """`{prefix}_loss` and `{prefix}_accuracy` per prefix from summed counts, and `loss`, their losses' sum."""
    out = {}
    for prefix in prefixes:
        count = max(sums[f"{prefix}_count"], 1.0)
        out[f"{prefix}_loss"] = sums[f"{prefix}_loss_sum"] / count
        out[f"{prefix}_accuracy"] = sums[f"{prefix}_correct_sum"] / count
    out["loss"] = sum(out[f"{prefix}_loss"] for prefix in prefixes)
    return out
