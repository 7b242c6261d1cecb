"""Masked language modelling alone (RoBERTa's and DistilBERT's pre-training loss): cross-entropy at the masked
positions, the MLM head run only there. Batches carry no next-sentence labels and the model has no NSP head."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bert_jax.objectives import losses
from bert_jax.objectives.base import BatchShape, Objective


class MaskedLM(Objective):
    name = "mlm"
    heads = ("mlm",)
    train_metrics = ("mlm_accuracy",)
    _prefixes = ("mlm",)

    def batch_contract(self, shape: BatchShape):
        b, s, p = shape.batch_size, shape.seq_len, shape.max_predictions
        return {
            "input_ids": ((b, s), np.int32),
            "input_mask": ((b, s), np.int32),
            "segment_ids": ((b, s), np.int32),
            "masked_lm_positions": ((b, p), np.int32),
            "masked_lm_ids": ((b, p), np.int32),
            "masked_lm_weights": ((b, p), np.float32),
        }

    def forward(self, model, batch, *, deterministic, rngs, frozen=None):
        return model(batch["input_ids"], batch["input_mask"], batch["segment_ids"], batch["masked_lm_positions"],
                     deterministic=deterministic, rngs=rngs)

    def sums(self, outputs, batch):
        return losses.classification_sums("mlm", outputs["mlm_logits"], batch["masked_lm_ids"],
                                          batch["masked_lm_weights"])

    def denominators(self, batch):
        return {"mlm": jnp.maximum(jnp.sum(batch["masked_lm_weights"].astype(jnp.float32)), 1.0)}

    def loss(self, sums, denominators):
        return sums["mlm_loss_sum"] / denominators["mlm"]

    def chance_levels(self, model_config) -> dict[str, float]:
        return {"mlm_accuracy": 1.0 / model_config.vocab_size}

    def summarize(self, sums):
        return losses.summarize_classification(sums, self._prefixes)

    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """Encoder + the MLM head (transform + tied decoder) at the P gathered positions only, padding slots
        included (the step computes them): 6 (D^2 + D V) P / S."""
        if shape.seq_len <= 0 or shape.max_predictions < 0:
            raise ValueError(f"seq_len ({shape.seq_len}) must be positive and max_predictions "
                             f"({shape.max_predictions}) >= 0")
        d, v = model_config.hidden_size, model_config.vocab_size
        mlm_head = 6 * (d * d + d * v) * shape.max_predictions / shape.seq_len
        return model_config.encoder_flops_per_token(shape.seq_len) + mlm_head
