"""Extractive question answering (SQuAD v1.1 and v2.0): the loss transformers' `*ForQuestionAnswering` computes —
the mean of the cross-entropies of the answer's start and end token over the sequence, positions clamped to
[0, S] with S ignored — kept as sums and counts like every objective.

An example is a question with its context; a long context gives several features (windows, `data/tasks/
squad_features.py`), and the features are what the run trains and evaluates on (an epoch is ceil(features / batch)
steps, and an eval line's `examples` counts features). Evaluation maps each feature's start/end logits back to one
answer per question (`squad_postprocess.py`) and scores them with the official metrics (`squad_metrics.py`):
exact match and F1; for v2.0 also the HasAns/NoAns splits and the best no-answer threshold. The best checkpoint is
chosen by F1.

The source loading, the run's sizing and the task reading are the classification objective's; the head is the
`question_answering` one (2 outputs), so exports load with `AutoModelForQuestionAnswering`.

Config: `config.finetune.{doc_stride, max_query_length, max_answer_length, n_best_size, null_score_diff_threshold}`.
"""

from __future__ import annotations

import json
import logging

import jax.numpy as jnp
import numpy as np
import optax

from bert_jax.errors import ConfigError
from bert_jax.objectives import classification
from bert_jax.objectives.base import BatchShape, TaskExamples

log = logging.getLogger("bert_jax")

# The batch fields the model trains on; the features' `example_index` and `offsets` stay on the host.
MODEL_FIELDS = ("input_ids", "input_mask", "segment_ids", "start_positions", "end_positions")
TARGETS = (("start_logits", "start_positions"), ("end_logits", "end_positions"))


class QuestionAnswering(classification.SequenceClassification):
    name = "question_answering"
    heads = ("question_answering",)
    train_metrics = ()
    sequence_predictions = ("start_logits", "end_logits")
    _eval_files: dict[str, str]

    def __init__(self, config=None):
        super().__init__(config)
        self._eval_files = {}  # of the last evaluation, per split (`eval_files`)

    # ----------------------------------------------------------------------------------------------- loss

    def batch_contract(self, shape: BatchShape):
        b, s = shape.batch_size, shape.seq_len
        return {"input_ids": ((b, s), np.int32), "input_mask": ((b, s), np.int32), "segment_ids": ((b, s), np.int32),
                "start_positions": ((b,), np.int32), "end_positions": ((b,), np.int32)}

    def sums(self, outputs, batch):
        weights = batch.get("example_weights", jnp.ones(batch["start_positions"].shape, jnp.float32))
        weights = weights.astype(jnp.float32)
        per_example = 0.0
        for logits_name, positions_name in TARGETS:
            logits = outputs[logits_name].astype(jnp.float32)
            seq_len = logits.shape[-1]
            # transformers clamps to [0, S] and ignores S (a target outside the sequence); the features never
            # produce one, so the mean over valid targets is the mean over examples.
            positions = jnp.clip(batch[positions_name], 0, seq_len)
            valid = (positions < seq_len).astype(jnp.float32)
            cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.minimum(positions,
                                                                                                seq_len - 1))
            per_example = per_example + 0.5 * cross_entropy * valid
        return {"loss_sum": jnp.sum(per_example * weights), "count": jnp.sum(weights)}

    def denominators(self, batch):
        return {"examples": jnp.asarray(batch["input_ids"].shape[0], jnp.float32)}

    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """The encoder's, plus `qa_outputs` (hidden -> 2) at every token: 6 * 2 D."""
        return model_config.encoder_flops_per_token(shape.seq_len) + 6 * 2 * model_config.hidden_size

    # ------------------------------------------------------------------------------------ task and model

    def task_examples(self) -> TaskExamples:
        data = self.task_data()
        features = encoded_splits(self.config, data, self.config.data.vocab_file, self.config.data.lowercase,
                                  self.config.model.get("type_vocab_size", 1) > 1)
        return TaskExamples(train=features["train"], eval_splits={split: features[split] for split in data.dev})

    def predictions(self, outputs):
        # float32 whatever the compute dtype: the span selection adds and ranks them
        return {name: outputs[name].astype(jnp.float32) for name in ("start_logits", "end_logits")}

    def eval_metrics(self, split, predictions, fields):
        from bert_jax.data import tasks
        from bert_jax.data.tasks import squad_metrics, squad_postprocess

        examples = self.task_data().dev[split]
        version_2 = tasks.get(self.settings.task).version_2
        selection = squad_postprocess.SpanSelection(
            n_best_size=self.settings.n_best_size, max_answer_length=self.settings.max_answer_length,
            version_2=version_2, null_score_diff_threshold=self.settings.null_score_diff_threshold)
        answers = squad_postprocess.select_answers(examples, fields["example_index"], fields["offsets"],
                                                   predictions["start_logits"], predictions["end_logits"], selection)
        self._eval_files.update(prediction_files(split, answers, version_2))
        return squad_metrics.compute(examples, answers.predictions, version_2, answers.null_score_diffs,
                                     answers.best_spans)

    def eval_files(self) -> dict[str, str]:
        return dict(self._eval_files)

    def export_labels(self):
        return None  # transformers' QA configs: LABEL_0 and LABEL_1

    @staticmethod
    def prepare_config(config):
        """The classification run's preparation, with an epoch over the train split's features (windows)."""
        for field in ("n_best_size", "max_answer_length", "max_query_length"):
            if config.finetune[field] < 1:
                raise ConfigError(f"config.finetune.{field} is {config.finetune[field]}; it counts tokens or "
                                  "candidates, so it must be at least 1")
        return classification.prepare_config(config, train_rows=_train_features)


def prediction_files(split: str, answers, version_2: bool) -> dict[str, str]:
    """The official evaluation scripts' inputs for `split` (the dev split's unprefixed): predictions.json (question
    id -> answer text, "" for no answer) and, for v2.0, null_odds.json (question id -> no-answer score minus the best
    span's, what `evaluate-v2.0.py --na-prob-file` ranks by)."""
    prefix = "" if split == "dev" else f"{split}_"
    files = {f"{prefix}predictions.json": json.dumps(answers.predictions, indent=2, ensure_ascii=False) + "\n"}
    if version_2:
        files[f"{prefix}null_odds.json"] = json.dumps(answers.null_score_diffs, indent=2) + "\n"
    return files


def _train_features(config, data, source) -> int:
    token_types = getattr(source.model_config, "type_vocab_size", 1) > 1
    count = len(encoded_splits(config, data, source.vocab_file, source.lowercase, token_types)["train"]["input_ids"])
    log.info("%s: %d train questions in %d features (windows of %d tokens, stride %d)", data.name, len(data.train),
             count, config.phases[0].max_seq_length, config.finetune.doc_stride)
    return count


# The last encoding, kept: the command encodes the train split to size the run, and the objective then reads it.
_ENCODED: dict = {}


def encoded_splits(config, data, vocab_file: str, lowercase: bool, token_types: bool) -> dict[str, dict]:
    """Every split's features (`squad_features.build`) with the source's tokenizer and the run's windowing; the
    train split's without the offsets and example indices, which only evaluation reads (the offsets are the largest
    array)."""
    from bert_jax.data.tasks import squad_features
    from bert_jax.data.tokenizers import vocabs

    settings = config.finetune
    windowing = squad_features.Windowing(config.phases[0].max_seq_length, settings.doc_stride,
                                         settings.max_query_length)
    key = (data.name, settings.data, vocab_file, lowercase, token_types, windowing)
    if key not in _ENCODED:
        vocab = vocabs.load(vocab_file, lowercase=lowercase)
        tokenizer = vocab.tokenizer()
        _ENCODED.clear()
        _ENCODED[key] = {split: squad_features.build(tokenizer, examples, windowing, vocab.specials.pad, token_types)
                         for split, examples in {"train": data.train, **data.dev}.items()}
        _ENCODED[key]["train"] = {name: _ENCODED[key]["train"][name] for name in MODEL_FIELDS}
    return _ENCODED[key]
