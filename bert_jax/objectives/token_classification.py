"""Token classification (CoNLL NER): a label per token, the loss transformers' `*ForTokenClassification` computes
with `labels` — cross-entropy averaged over the positions whose label is not -100 (the first sub-token of each word;
`data/tasks/token_encoding.py`) — and, on each dev split, seqeval's entity-level precision, recall and F1 with the
tag accuracy (`data/tasks/tagging_metrics.py`), as transformers' run_ner.py. The best checkpoint is the best F1.

The task reading, config preparation, starting parameters and export are the classification objective's.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from bert_jax.data.tasks.token_encoding import IGNORE
from bert_jax.objectives.base import BatchShape, TaskExamples
from bert_jax.objectives.classification import SequenceClassification


class TokenClassification(SequenceClassification):
    name = "token_classification"
    heads = ("token_classification",)
    train_metrics = ("accuracy",)

    def batch_contract(self, shape: BatchShape):
        b, s = shape.batch_size, shape.seq_len
        return {name: ((b, s), np.int32) for name in ("input_ids", "input_mask", "segment_ids", "labels")}

    def sums(self, outputs, batch):
        logits = outputs["logits"].astype(jnp.float32)  # [B, S, L]
        labels = batch["labels"]
        weights = batch.get("example_weights", jnp.ones(labels.shape[:1], jnp.float32)).astype(jnp.float32)
        counted = (labels != IGNORE).astype(jnp.float32) * weights[:, None]
        safe = jnp.where(labels == IGNORE, 0, labels)
        per_token = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
        correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
        return {"loss_sum": jnp.sum(per_token * counted), "count": jnp.sum(counted),
                "correct_sum": jnp.sum(correct * counted)}

    def denominators(self, batch):
        """The labelled tokens of the whole batch (at least 1): transformers' mean over the non-ignored positions."""
        return {"tokens": jnp.maximum(jnp.sum(batch["labels"] != IGNORE), 1).astype(jnp.float32)}

    def loss(self, sums, denominators):
        return sums["loss_sum"] / denominators["tokens"]

    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """The encoder's, plus the classifier at every token: 6 D L."""
        return model_config.encoder_flops_per_token(shape.seq_len) + 6 * model_config.hidden_size * self.num_labels

    def task_examples(self) -> TaskExamples:
        from bert_jax.data.tasks import token_encoding

        data = self.task_data()
        vocab, max_len, token_types = self.encoding_settings()

        def fields(name, sentences):
            return token_encoding.encode_words(vocab.tokenizer(), sentences, max_len, vocab.specials.pad, token_types,
                                               bool(self.settings.get("label_all_tokens", False)), data.labels,
                                               what=f"{data.name} {name}")

        return TaskExamples(train=fields("train", data.train),
                            eval_splits={name: fields(name, split) for name, split in data.dev.items()})

    sequence_predictions = ("predicted",)

    def predictions(self, outputs):
        return {"predicted": jnp.argmax(outputs["logits"], axis=-1).astype(jnp.int32)}

    def eval_metrics(self, split, predictions, fields):
        from bert_jax.data.tasks import tagging_metrics

        true, predicted = tagging_metrics.tag_sequences(predictions["predicted"], fields["labels"],
                                                        self.task_data().labels)
        return tagging_metrics.entity_scores(true, predicted)
