"""Sequence classification and regression (fine-tuning on GLUE or a table): the loss transformers'
`*ForSequenceClassification` computes for each `problem_type` —

    regression                  mean squared error of the single output
    single_label_classification cross-entropy over `num_labels` logits
    multi_label_classification  binary cross-entropy with logits, averaged over examples and labels

— kept as sums and counts like every objective. The examples come from the task reader (`data/tasks/`) encoded
with the model's tokenizer; evaluation adds the task's metrics on each dev split (`data/tasks/metrics.py`).

Config: `config.finetune` (`task`, `data`, `model`: where the encoder comes from, the table task's columns) and
`config.model.{num_labels, problem_type}`, which `python -m bert_jax.finetune` sets from the task.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bert_jax.models import COMPUTE_FIELDS
from bert_jax.objectives.base import Batching, BatchShape, Objective, TaskExamples

log = logging.getLogger("bert_jax")

REGRESSION = "regression"
MULTI_LABEL = "multi_label_classification"


class SequenceClassification(Objective):
    name = "classification"
    heads = ("sequence_classification",)
    train_metrics = ("accuracy",)

    def __init__(self, config=None):
        super().__init__(config)
        self.settings = None if config is None else config.finetune
        self.problem_type = "single_label_classification" if config is None else config.model.problem_type
        self.num_labels = 2 if config is None else config.model.num_labels
        self._task_data = None
        if config is not None:
            from bert_jax.data import tasks

            self.best_metric = tasks.get(self.settings.task).metrics_for(self.problem_type)[1]
        if self.problem_type == REGRESSION:
            self.train_metrics = ()

    # ----------------------------------------------------------------------------------------------- loss

    def batch_contract(self, shape: BatchShape):
        b, s = shape.batch_size, shape.seq_len
        if self.problem_type == REGRESSION:
            labels = ((b,), np.float32)
        elif self.problem_type == MULTI_LABEL:
            labels = ((b, self.num_labels), np.float32)
        else:
            labels = ((b,), np.int32)
        return {"input_ids": ((b, s), np.int32), "input_mask": ((b, s), np.int32), "segment_ids": ((b, s), np.int32),
                "labels": labels}

    def forward(self, model, batch, *, deterministic, rngs, frozen=None):
        return model(batch["input_ids"], batch["input_mask"], batch["segment_ids"], deterministic=deterministic,
                     rngs=rngs)

    def sums(self, outputs, batch):
        logits = outputs["logits"].astype(jnp.float32)
        labels = batch["labels"]
        weights = batch.get("example_weights", jnp.ones(labels.shape[:1], jnp.float32)).astype(jnp.float32)
        if self.problem_type == REGRESSION:
            per_example = (logits[:, 0] - labels) ** 2
        elif self.problem_type == MULTI_LABEL:
            per_example = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels), axis=-1)
        else:
            per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        sums = {"loss_sum": jnp.sum(per_example * weights), "count": jnp.sum(weights)}
        if self.problem_type not in (REGRESSION, MULTI_LABEL):
            correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
            sums["correct_sum"] = jnp.sum(correct * weights)
        return sums

    def denominators(self, batch):
        return {"examples": jnp.asarray(batch["labels"].shape[0], jnp.float32)}

    def loss(self, sums, denominators):
        return sums["loss_sum"] / denominators["examples"]

    def summarize(self, sums):
        count = max(sums["count"], 1.0)
        out = {"loss": sums["loss_sum"] / count}
        if "correct_sum" in sums:
            out["accuracy"] = sums["correct_sum"] / count
        return out

    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """The encoder's, plus the pooler and classifier at one position per sequence: 6 (D^2 + D L) / S."""
        d = model_config.hidden_size
        return model_config.encoder_flops_per_token(shape.seq_len) + 6 * (d * d + d * self.num_labels) / shape.seq_len

    # ------------------------------------------------------------------------------------ task and model

    def task_data(self):
        """The task's examples as read (cached: the command reads them first to size the run)."""
        if self._task_data is None:
            from bert_jax.data import tasks

            self._task_data = tasks.get(self.settings.task).read(self.settings.data, self.settings)
        return self._task_data

    def encoding_settings(self):
        """(vocab, max_seq_length, token_types) that encode the task's examples: the source's tokenizer, the run's
        one phase length, and whether the model reads token types (RoBERTa and DistilBERT do not)."""
        from bert_jax.data.tokenizers import vocabs

        vocab = vocabs.load(self.config.data.vocab_file, lowercase=self.config.data.lowercase)
        return vocab, self.config.phases[0].max_seq_length, self.config.model.get("type_vocab_size", 1) > 1

    def task_examples(self) -> TaskExamples:
        from bert_jax.data.tasks import encoding

        data = self.task_data()
        vocab, max_len, token_types = self.encoding_settings()

        def fields(examples):
            arrays = encoding.encode(vocab.tokenizer(), examples, max_len, vocab.specials.pad, token_types)
            arrays["labels"] = encoding.label_array(examples, data.problem_type, self.num_labels)
            return arrays

        return TaskExamples(train=fields(data.train), eval_splits={name: fields(split) for name, split in data.dev.items()})

    def batching(self) -> Batching:
        if self.settings is None:
            return Batching()
        return Batching(length_bucket=int(self.settings.get("length_bucket", 0)),
                        group_by_length=bool(self.settings.get("group_by_length", False)))

    def predictions(self, outputs):
        return {"logits": outputs["logits"]}

    def eval_metrics(self, split, predictions, fields):
        from bert_jax.data.tasks import metrics

        data = self.task_data()
        predicted = metrics.predicted(predictions["logits"], data.problem_type)
        return metrics.compute(data.metrics, predicted, fields["labels"].astype(predicted.dtype), data.problem_type)

    def export_labels(self):
        return self.task_data().labels or ("LABEL_0",)

    @staticmethod
    def prepare_config(config):
        """The fine-tuning run's config completed from its source and task (`prepare_config` below)."""
        return prepare_config(config)

    def initial_params(self, make_model, seed: int):
        from flax import nnx

        from bert_jax.interop import sources

        model = make_model(nnx.Rngs(seed))
        if self.settings.get("init", "pretrained") == "random":
            log.info("fine-tuning %s from random initialisation (finetune.init=random): %s gives the architecture "
                     "and tokenizer only", type(model).__name__, self.settings.model)
            return jax.device_get(nnx.state(model, nnx.Param))
        report = sources.load_encoder(sources.describe(self.settings.model), model)
        log.info("fine-tuning %s from %s: %s", type(model).__name__, self.settings.model, report.replace("\n", "; "))
        return jax.device_get(nnx.state(model, nnx.Param))


def prepare_config(config, train_rows=None):
    """The run's config completed from its source and task: the encoder's architecture (the source's config) with
    the task's `num_labels` and `problem_type`, the tokenizer of the source, and the schedule in steps from
    `finetune.epochs` (an epoch is ceil(N / batch_size) steps; evaluation and a checkpoint at the end of each,
    warmup `finetune.warmup_fraction` of all steps). Reads the task once first, so bad data fails before any
    model is built. `train_rows(config, data, source)`: N where a train example is not one row (a question's
    context windows); the examples by default."""
    import math

    import ml_collections

    from bert_jax.configuration import validate
    from bert_jax.data import tasks
    from bert_jax.errors import ConfigError
    from bert_jax.interop import sources

    settings = config.finetune
    if settings.get("init", "pretrained") not in ("pretrained", "random"):
        raise ConfigError(f"finetune.init must be 'pretrained' or 'random', got {settings.init!r}")
    if settings.get("length_bucket", 0) < 0:
        raise ConfigError(f"finetune.length_bucket is {settings.length_bucket}; it is a number of tokens to round "
                          "each batch's length up to (0 keeps every batch at max_seq_length)")
    task = tasks.get(settings.task)
    data = task.read(settings.data, settings)
    source = sources.describe(settings.model)
    arch = source.model_config
    model = {name: getattr(arch, name) for name in type(arch).HF_FIELDS}
    model.update({name: config.model[name] for name in COMPUTE_FIELDS}, model_type=arch.model_type,
                 num_labels=data.num_labels, problem_type=data.problem_type)
    rows = len(data.train) if train_rows is None else train_rows(config, data, source)
    steps_per_epoch = math.ceil(rows / config.batch_size)
    train_steps = max(round(settings.epochs * steps_per_epoch), 1)
    config.unlock()
    config.model = ml_collections.ConfigDict(model)
    config.data.vocab_file = source.vocab_file
    config.data.lowercase = source.lowercase
    config.train_steps = train_steps
    config.optimizer.warmup_steps = round(settings.warmup_fraction * train_steps)
    config.eval_every = config.checkpoint_every = steps_per_epoch
    config.log_every = min(config.log_every, steps_per_epoch)
    config.lock()
    validate(config)
    log.info("%s: %d train examples, %d labels (%s), %d steps (%g epochs of %d), warmup %d, model %s from %s",
             task.name, len(data.train), data.num_labels, data.problem_type, train_steps, settings.epochs,
             steps_per_epoch, config.optimizer.warmup_steps, arch.model_type, settings.model)
    return config
