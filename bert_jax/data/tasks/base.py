"""What a fine-tuning task is: where its splits are, how a row becomes an example (one or two texts and a label),
its label names, Hugging Face's problem type, and its metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bert_jax.errors import InputError

REGRESSION = "regression"
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"


@dataclasses.dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None  # the second text of a pair task, None for single sentences
    label: Any  # a label index (single-label), a float (regression) or a tuple of label indices (multi-label)


@dataclasses.dataclass(frozen=True)
class TestSplit:
    """An unlabelled split: GLUE's example indices (the submission's `index` column) and the texts (label None)."""

    indices: list[str]
    examples: list[Example]


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A task's examples as read: the train split and the dev splits (MNLI has two; the first is the primary)."""

    name: str
    labels: tuple[str, ...]  # label names by index (empty for regression)
    problem_type: str
    train: list[Example]
    dev: dict[str, list[Example]]
    metrics: tuple[str, ...]  # reported on every dev split
    best_metric: str  # on the primary dev split, picks the best checkpoint

    @property
    def num_labels(self) -> int:
        return 1 if self.problem_type == REGRESSION else len(self.labels)


@dataclasses.dataclass(frozen=True)
class Task:
    """A task's definition; subclasses implement `read_split`."""

    name: str
    labels: tuple[str, ...]  # label names by index; () = read from the data (the generic table task)
    problem_type: str
    metrics: tuple[str, ...]  # metric names (data/tasks/metrics.py) reported on each dev split
    best_metric: str  # the metric (on the primary dev split) that picks the best checkpoint
    dev_splits: tuple[str, ...] = ("dev",)  # file stems of the dev splits, the primary first
    objective: str = "classification"  # the objective (objectives/OBJECTIVES) that trains the task

    def read(self, path: str, settings: Any = None) -> TaskData:
        """The train and dev splits under `path` (`settings`: the run's `config.finetune`, for tasks with column
        arguments)."""
        root = Path(path)
        if not root.is_dir():
            raise InputError(f"task data directory {root} does not exist: pass --data DIR holding the {self.name} "
                             f"files (train and {', '.join(self.dev_splits)})")
        labels = self.label_names(root, settings)
        train = self.read_split(root, "train", labels, settings)
        dev = {split: self.read_split(root, split, labels, settings) for split in self.dev_splits}
        problem_type = self.problem_type_for(settings)
        metrics, best = self.metrics_for(problem_type)
        return TaskData(self.name, labels, problem_type, train, dev, metrics, best)

    def metrics_for(self, problem_type: str) -> tuple[tuple[str, ...], str]:
        return self.metrics, self.best_metric

    def label_names(self, root: Path, settings: Any) -> tuple[str, ...]:
        return self.labels

    def problem_type_for(self, settings: Any) -> str:
        return self.problem_type

    def read_split(self, root: Path, split: str, labels: tuple[str, ...], settings: Any) -> list[Example]:
        raise NotImplementedError


def label_index(value: str, labels: tuple[str, ...], where: str) -> int:
    """The index of a label name; a value outside the task's label set is an error naming where it was read."""
    try:
        return labels.index(value)
    except ValueError:
        raise InputError(f"{where}: label {value!r} is not one of the task's labels {list(labels)}") from None


def regression_value(value: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: label {value!r} is not a number (this task is a regression)") from None


def check_not_empty(examples: list, path: Path) -> list:
    if not examples:
        raise InputError(f"{path} holds no examples: every split of a task needs at least one")
    return examples
