"""The run's data when the objective brings its own encoded examples (`Objective.task_examples`: fine-tuning):
a shuffled, repeated, checkpointable grain stream of the train split, and an evaluation over every eval split that
reports the objective's sums and its whole-split metrics (`Objective.eval_metrics`, from the predictions of
`step.predict_step`).

Order: the train examples are shuffled per epoch (grain's index shuffle with `seed + epoch`) and the stream is
batched across epoch boundaries, so a step is always a full global batch; an epoch is ceil(N / batch) steps. Each
JAX process keeps its contiguous share of every global batch. The iterator's position is saved in checkpoints
(`get_state`/`set_state`), so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import grain
import jax
import numpy as np

from bert_jax.errors import InputError
from bert_jax.objectives.base import TaskExamples
from bert_jax.training import length_buckets, step as step_lib
from bert_jax.training.phases import Phase
from bert_jax.training.step import EVAL_EXAMPLES

log = logging.getLogger("bert_jax")


class _Rows:
    """Random access to the rows of a dict of [N, ...] arrays (grain's `MapDataset.source`)."""

    def __init__(self, fields: dict[str, np.ndarray]) -> None:
        self.fields = fields
        self.size = len(next(iter(fields.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {name: values[index] for name, values in self.fields.items()}


class _HostShare:
    """This process's contiguous rows of a global batch."""

    def __init__(self, process_index: int, process_count: int) -> None:
        self.index, self.count = process_index, process_count

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.count == 1:
            return batch
        rows = len(next(iter(batch.values()))) // self.count
        return {name: values[self.index * rows:(self.index + 1) * rows] for name, values in batch.items()}


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return math.ceil(num_examples / batch_size)


class TaskInputs:
    def __init__(self, run_setup, examples: TaskExamples) -> None:
        self.run_setup = run_setup
        self.examples = examples
        self.batching = run_setup.objective.batching()
        self._predict = None

    def ensure(self, plan: list[Phase]) -> None:
        """Every split holds examples of the phase's length (the objective encoded them for it)."""
        for name, fields in {"train": self.examples.train, **self.examples.eval_splits}.items():
            if not len(fields["input_ids"]):
                raise InputError(f"the {name} split holds no examples")
            if fields["input_ids"].shape[-1] != plan[0].max_seq_length:  # [N, S], or [N, C, S] (multiple choice)
                raise InputError(f"the {name} split is encoded at length {fields['input_ids'].shape[-1]}, the run's "
                                 f"phase at {plan[0].max_seq_length}: fine-tuning runs one phase")
        log.info("task data: %d train examples (%d steps per epoch at batch %d); eval splits %s",
                 len(self.examples.train["input_ids"]),
                 steps_per_epoch(len(self.examples.train["input_ids"]), self.run_setup.config.batch_size),
                 self.run_setup.config.batch_size,
                 {name: len(fields["input_ids"]) for name, fields in self.examples.eval_splits.items()})

    def train_iterator(self, phase: Phase):
        config = self.run_setup.config
        rows = _Rows(self.examples.train)
        seed = int(config.seed) % 2**32
        if self.batching.group_by_length:
            lengths = length_buckets.example_lengths(self.examples.train["input_mask"])
            dataset = (grain.MapDataset.source(length_buckets.LengthGroupedOrder(lengths, config.batch_size, seed))
                       .map(rows.__getitem__))
        else:
            dataset = (grain.MapDataset.source(rows)
                       .shuffle(seed=seed)  # reshuffled every epoch with seed + epoch
                       .repeat(None))
        # The global batch is cut before each host takes its share, so every host cuts to the same length.
        dataset = (dataset.batch(config.batch_size, drop_remainder=True)
                   .map(length_buckets.CutToBucket(self.batching.length_bucket))
                   .map(_HostShare(jax.process_index(), jax.process_count())))
        return iter(dataset.to_iter_dataset())

    def _batches(self, fields: dict[str, np.ndarray]):
        """Global batches of a split in order, the last padded with rows of weight 0, each cut to its bucketed length
        (the split is in length order when cutting: see `evaluate`); this host's share of each."""
        batch_size = self.run_setup.config.batch_size
        share = _HostShare(jax.process_index(), jax.process_count())
        cut_to_bucket = length_buckets.CutToBucket(self.batching.length_bucket)
        total = len(fields["input_ids"])
        for start in range(0, total, batch_size):
            batch = cut_to_bucket({name: values[start:start + batch_size] for name, values in fields.items()})
            real = len(batch["input_ids"])
            pad = batch_size - real
            if pad:
                batch = {name: np.concatenate([values, np.zeros((pad, *values.shape[1:]), values.dtype)])
                         for name, values in batch.items()}
            batch["example_weights"] = (np.arange(batch_size) < real).astype(np.float32)
            yield real, share(batch)

    def evaluate(self, phase: Phase, params) -> dict[str, Any]:
        """The objective's summaries and whole-split metrics on every eval split; the primary split's under their
        own names, the others' prefixed with the split's name (MNLI's `dev_mismatched_accuracy`)."""
        run = self.run_setup
        if self._predict is None:
            self._predict = step_lib.jit_eval_step(graphdef=run.graphdef, objective=run.objective,
                                                   param_shardings=run.shardings.params, mesh=run.mesh,
                                                   rules=run.rules, step=step_lib.predict_step)
        record: dict[str, Any] = {"kind": "eval", "max_seq_length": phase.max_seq_length}
        for number, (split, fields) in enumerate(self.examples.eval_splits.items()):
            # Cut batches are shortest when similar lengths share them: evaluate in length order, report in the
            # split's order.
            order = np.arange(len(fields["input_ids"]))
            if self.batching.length_bucket:
                order = np.argsort(length_buckets.example_lengths(fields["input_mask"]), kind="stable")
            totals, kept = None, []
            for real, host_batch in self._batches({name: values[order] for name, values in fields.items()}):
                sums, predictions = self._predict(params, run.global_batch(host_batch))
                sums, predictions = jax.device_get((sums, predictions))
                totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
                kept.append(length_buckets.pad_back(
                    jax.tree.map(lambda x, real=real: np.asarray(x)[:real], predictions),
                    run.objective.sequence_predictions, phase.max_seq_length))
            totals = {name: float(value) for name, value in totals.items()}
            predictions = {name: np.empty_like(np.concatenate([p[name] for p in kept])) for name in kept[0]}
            for name in predictions:
                predictions[name][order] = np.concatenate([p[name] for p in kept])
            summary = dict(run.objective.summarize(totals), examples=int(totals[EVAL_EXAMPLES]))
            summary.update(run.objective.eval_metrics(split, predictions, fields))
            prefix = "" if number == 0 else f"{split}_"
            record.update({prefix + name: value for name, value in summary.items()})
        return record
