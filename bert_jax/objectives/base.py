"""What an objective is: the contract between a training objective and the core (state, step, loop, metrics,
benchmark, compile-ahead, FLOPs), which names no objective.

An objective owns its batch contract (field names, shapes, dtypes), the heads it reads from the model, its loss as
sums and counts, its metric summaries and its FLOPs per token.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class BatchShape:
    """The static shape of a global batch, from the config and the phase."""

    batch_size: int  # sequences per step over all hosts
    seq_len: int  # tokens per sequence
    max_predictions: int = 0  # masked positions per sequence (objectives with an MLM loss)


@dataclasses.dataclass(frozen=True)
class FrozenSpec:
    """A model an objective reads but never trains (a distillation teacher). The core places its parameters on the
    mesh once and passes them to every step as an argument: never in the optimizer state or a checkpoint."""

    make_model: Callable[[Any], Any]  # make(rngs) -> the frozen model (its architecture and heads)
    load_params: Callable[[], Any]  # -> its parameters as host arrays, the nnx.State of make_model's nnx.Param
    description: str  # where it comes from, for logs and errors


@dataclasses.dataclass(frozen=True)
class TaskExamples:
    """The encoded examples of an objective that reads a task's labelled data rather than a built pre-training
    dataset (fine-tuning): host arrays of the batch contract's fields, [N, ...] each."""

    train: dict[str, np.ndarray]
    eval_splits: dict[str, dict[str, np.ndarray]]  # split name -> fields; the first split is the primary one


@dataclasses.dataclass(frozen=True)
class Batching:
    """How an objective's own examples are batched (`training/length_buckets.py`)."""

    length_bucket: int = 0  # cut each batch to its longest example rounded up to this many tokens (0: never)
    group_by_length: bool = False  # batch examples of similar length (transformers' length-grouped order)


class Objective(abc.ABC):
    """A training objective. Subclasses set `name`, `heads` and `train_metrics` and implement the methods."""

    name: str  # the value of `config.objective` that selects it
    heads: tuple[str, ...]  # the model heads it reads (selects the model class, e.g. ("mlm", "nsp"))
    train_metrics: tuple[str, ...]  # summary keys shown on the console's train line besides `loss`

    def __init__(self, config=None):
        self.config = config  # the run's config, for objectives with fields of their own

    @abc.abstractmethod
    def batch_contract(self, shape: BatchShape) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Field -> (shape, NumPy dtype) of the global batch the step is compiled for. Every field is split over the
        data axes on its first dimension. Eval batches add `example_weights` [B] (1 = real, 0 = padding)."""

    @abc.abstractmethod
    def forward(self, model, batch: Mapping[str, Any], *, deterministic: bool, rngs, frozen=None) -> dict[str, Any]:
        """Runs the model on the batch's inputs; returns its outputs. `frozen` is the frozen model (`frozen_spec`),
        merged with its parameters, or None."""

    @abc.abstractmethod
    def sums(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Any]:
        """Loss and metric sums and counts of a (micro-)batch: they add across devices and micro-batches."""

    @abc.abstractmethod
    def denominators(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The whole batch's counts that `loss` divides by, from the batch alone (before any forward pass), so
        that the micro-batch losses of gradient accumulation add up to the full-batch loss."""

    @abc.abstractmethod
    def loss(self, sums: Mapping[str, Any], denominators: Mapping[str, Any]):
        """The scalar the step minimises: linear in `sums`."""

    @abc.abstractmethod
    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Means from accumulated sums: `loss` and the objective's metrics (e.g. `mlm_accuracy`)."""

    @abc.abstractmethod
    def flops_per_token(self, model_config, shape: BatchShape) -> float:
        """Training (forward + backward) model FLOPs per input token, multiply-add = 2 (for MFU)."""

    def chance_levels(self, model_config) -> dict[str, float]:
        """What guessing uniformly scores on each summarized metric (e.g. `mlm_accuracy`: 1 / vocab size), shown
        next to the run's final eval so a small number reads against its baseline; none by default."""
        return {}

    def frozen_spec(self) -> FrozenSpec | None:
        """The frozen model this objective reads, if any (none by default)."""
        return None

    def init_params(self, params, frozen_params):
        """A fresh model's parameters, made from the frozen model's where the objective wants that (a student
        initialised from its teacher); runs inside the sharded init. By default, unchanged."""
        return params

    def check_data(self, data_dir: str, vocab_size: int) -> None:
        """Raises `InputError` when the built dataset in `data_dir` cannot serve this objective beyond what the
        trainer checks for every objective (a distillation teacher's vocabulary must be the data's). By default, the
        data's vocab must be that of the model the run continues from (`config.init_from`), if any."""
        if self.continues_from():
            from bert_jax.interop import init_from

            init_from.check_vocab(self.config, data_dir)

    # The eval summary whose largest value marks the best parameters so far (kept in WORKDIR/best), or None.
    best_metric: str | None = None

    def continues_from(self) -> str | None:
        """The trained model a run of this objective continues from (`config.init_from`: continued pre-training),
        or None. A fresh run evaluates it at step 0, the baseline; a resumed run does not read it."""
        return (self.config.get("init_from") or None) if self.config is not None else None

    def complete_config(self, config) -> None:
        """Completes the run's config in place before anything is built (idempotent): by default, the architecture
        and tokenizer of the model `config.init_from` names."""
        if self.continues_from():
            from bert_jax.interop import init_from

            init_from.prepare_config(config)

    def initial_params(self, make_model, seed: int):
        """The initial parameters (host arrays, the nnx.State of `make_model`'s nnx.Param) when the objective starts
        from a trained model (fine-tuning: a pre-trained encoder and a fresh head from `seed`; by default the model
        `config.init_from` names, heads it lacks fresh from `seed`), else None: a fresh initialisation."""
        if not self.continues_from():
            return None
        from bert_jax.interop import init_from

        return init_from.initial_params(self.config, make_model, seed)

    def task_examples(self) -> TaskExamples | None:
        """The objective's own examples (a fine-tuning task's), or None: the run reads the built dataset."""
        return None

    def batching(self) -> Batching:
        """How `task_examples` are batched: full length, uniformly shuffled by default."""
        return Batching()

    def predictions(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """The per-example outputs evaluation keeps for `eval_metrics` (e.g. logits); none by default."""
        return {}

    # The `predictions` with a position axis (axis 1): evaluation pads them back after cutting batches short.
    sequence_predictions: tuple[str, ...] = ()

    def eval_metrics(self, split: str, predictions: Mapping[str, np.ndarray],
                     fields: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Metrics of a whole eval split that are not sums (F1, correlations), from `predictions` of its examples
        and their batch fields; none by default."""
        return {}

    def eval_files(self) -> dict[str, str]:
        """Files the last evaluation produced, saved next to the best parameters when it was the best (file name ->
        text): SQuAD's predictions.json and null_odds.json for the official scripts; none by default."""
        return {}

    def export_labels(self) -> tuple[str, ...] | None:
        """Label names for a Hugging Face export's `id2label` (a model with a task head), or None."""
        return None

    def field_names(self) -> tuple[str, ...]:
        """The batch contract's field names (they do not depend on the shape)."""
        return tuple(self.batch_contract(BatchShape(1, 1, 1)))

    def host_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The contract's fields of a loader batch (which may carry more, e.g. NSP labels an MLM objective does
        not read), plus `example_weights` when present."""
        wanted = {*self.field_names(), "example_weights"}
        return {name: value for name, value in batch.items() if name in wanted}
