"""Multiple choice (SWAG): inputs [B, C, S], one score per choice, the loss transformers' `*ForMultipleChoice`
computes with `labels` (cross-entropy over the C scores, the classification objective's single-label loss) and the
accuracy of the chosen ending, as run_swag.py. The number of choices C is the task's label count
(`config.model.num_labels`), so the step is compiled for [B, C, S].

The task reading, config preparation, starting parameters, loss sums and export are the classification
objective's.
"""

from __future__ import annotations

import numpy as np

from bert_jax.objectives.base import BatchShape, TaskExamples
from bert_jax.objectives.classification import SequenceClassification


class MultipleChoice(SequenceClassification):
    name = "multiple_choice"
    heads = ("multiple_choice",)
    train_metrics = ("accuracy",)

    def batch_contract(self, shape: BatchShape):
        b, c, s = shape.batch_size, self.num_labels, shape.seq_len
        return {"input_ids": ((b, c, s), np.int32), "input_mask": ((b, c, s), np.int32),
                "segment_ids": ((b, c, s), np.int32), "labels": ((b,), np.int32)}

    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """Per token of the [B, S] shape the loop counts: C sequences' encoder, pooler and one-output classifier."""
        d = model_config.hidden_size
        return self.num_labels * (model_config.encoder_flops_per_token(shape.seq_len) + 6 * (d * d + d) / shape.seq_len)

    def task_examples(self) -> TaskExamples:
        from bert_jax.data.tasks import token_encoding

        data = self.task_data()
        vocab, max_len, token_types = self.encoding_settings()

        def fields(examples):
            return token_encoding.encode_choices(vocab.tokenizer(), examples, max_len, vocab.specials.pad, token_types)

        return TaskExamples(train=fields(data.train),
                            eval_splits={name: fields(split) for name, split in data.dev.items()})

    def predictions(self, outputs):
        return {}  # accuracy is a sum: summarize reports it

    def eval_metrics(self, split, predictions, fields):
        return {}

    def export_labels(self):
        return None  # the head scores choices; config.json gets transformers' LABEL_i for num_labels = C
