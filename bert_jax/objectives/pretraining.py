"""BERT's pre-training objective: masked LM plus next-sentence prediction, each a mean (MLM over masked tokens, NSP
over examples) and the loss their sum, as the original."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bert_jax.objectives import losses
from bert_jax.objectives.base import BatchShape
from bert_jax.objectives.mlm import MaskedLM


class MaskedLMAndNextSentence(MaskedLM):
    name = "mlm_nsp"
    heads = ("mlm", "nsp")
    train_metrics = ("mlm_accuracy", "nsp_accuracy")
    _prefixes = ("mlm", "nsp")

    def chance_levels(self, model_config) -> dict[str, float]:
        return {**super().chance_levels(model_config), "nsp_accuracy": 0.5}

    def batch_contract(self, shape: BatchShape):
        contract = super().batch_contract(shape)
        contract["next_sentence_labels"] = ((shape.batch_size,), np.int32)  # 1 = B is a random segment
        return contract

    def sums(self, outputs, batch):
        sums = super().sums(outputs, batch)
        sums.update(losses.classification_sums("nsp", outputs["nsp_logits"], batch["next_sentence_labels"].reshape(-1),
                                               batch.get("example_weights")))
        return sums

    def denominators(self, batch):
        return dict(super().denominators(batch),
                    nsp=jnp.asarray(batch["next_sentence_labels"].shape[0], jnp.float32))

    def loss(self, sums, denominators):
        return super().loss(sums, denominators) + sums["nsp_loss_sum"] / denominators["nsp"]

    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """MaskedLM's count + the pooler and NSP head, once per sequence: 6 (D^2 + 2 D) / S."""
        d = model_config.hidden_size
        return super().flops_per_token(model_config, shape) + 6 * (d * d + 2 * d) / shape.seq_len
