"""The generic classification (or regression) task over tables: `DIR/{train,dev}.{csv,tsv,jsonl,parquet}` with
column arguments (`config.finetune`): `text_a`, `text_b` ("" for single texts), `label_column`, `labels` (names in
id order; [] = the sorted distinct labels of the train split) and `problem_type` (Hugging Face's). Multi-label rows
hold a list of label names (JSONL, Parquet) or the names separated by spaces (CSV, TSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from bert_jax.data.tasks.base import (MULTI_LABEL, REGRESSION, SINGLE_LABEL, Example, Task, check_not_empty,
                                      label_index, regression_value)
from bert_jax.errors import InputError

EXTENSIONS = (".csv", ".tsv", ".jsonl", ".parquet")
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)


def split_file(root: Path, split: str) -> Path:
    found = [root / f"{split}{ext}" for ext in EXTENSIONS if (root / f"{split}{ext}").is_file()]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise InputError(f"{root} holds {what} {split} file among {[split + ext for ext in EXTENSIONS]}: give "
                         f"exactly one (the table task reads train and dev)")
    return found[0]


def rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row as a dict) of a CSV/TSV (with a header), JSONL or Parquet file; `where` is `file:line`."""
    if path.suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="," if path.suffix == ".csv" else "\t")
            for row in reader:
                yield f"{path}:{reader.line_num}", row
    elif path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield f"{path}:{number}", json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"{path}:{number}: not a JSON object ({e.msg})") from None
    else:
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{path}: row {number}", row


class TableTask(Task):
    def _settings(self, settings: Any) -> dict[str, Any]:
        if settings is None or not settings.text_a or not settings.label_column:
            raise InputError("the table task needs its columns: --config.finetune.text_a=COLUMN and "
                             "--config.finetune.label_column=COLUMN (and --config.finetune.text_b for pairs)")
        if settings.problem_type not in PROBLEM_TYPES:
            raise InputError(f"config.finetune.problem_type {settings.problem_type!r} is not one of "
                             f"{list(PROBLEM_TYPES)}")
        return settings

    def problem_type_for(self, settings: Any) -> str:
        return self._settings(settings).problem_type

    def metrics_for(self, problem_type: str) -> tuple[tuple[str, ...], str]:
        if problem_type == REGRESSION:
            return ("pearson", "spearmanr"), "pearson"
        if problem_type == MULTI_LABEL:
            return ("accuracy", "f1"), "f1"
        return self.metrics, self.best_metric

    def label_names(self, root: Path, settings: Any) -> tuple[str, ...]:
        settings = self._settings(settings)
        if settings.problem_type == REGRESSION:
            return ()
        if settings.labels:
            return tuple(str(name) for name in settings.labels)
        path = split_file(root, "train")
        seen = set()
        for where, row in rows(path):
            seen.update(self._label_values(row, where, settings))
        return tuple(sorted(seen))

    def _label_values(self, row: dict, where: str, settings: Any) -> list[str]:
        if settings.label_column not in row:
            raise InputError(f"{where}: no column {settings.label_column!r} (config.finetune.label_column); the "
                             f"row has {sorted(row)}")
        value = row[settings.label_column]
        if settings.problem_type == MULTI_LABEL:
            return [str(v) for v in value] if isinstance(value, list) else str(value).split()
        return [str(value)]

    def read_split(self, root: Path, split: str, labels: tuple[str, ...], settings: Any) -> list[Example]:
        settings = self._settings(settings)
        path = split_file(root, split)
        examples = []
        for where, row in rows(path):
            for column in (settings.text_a, settings.text_b):
                if column and column not in row:
                    raise InputError(f"{where}: no column {column!r} (config.finetune.text_a/text_b); the row has "
                                     f"{sorted(row)}")
            values = self._label_values(row, where, settings)
            if settings.problem_type == REGRESSION:
                label = regression_value(values[0], where)
            elif settings.problem_type == MULTI_LABEL:
                label = tuple(sorted({label_index(value, labels, where) for value in values}))
            else:
                label = label_index(values[0], labels, where)
            text_b = str(row[settings.text_b]) if settings.text_b else None
            examples.append(Example(str(row[settings.text_a]), text_b, label))
        return check_not_empty(examples, path)


TABLE = TableTask("table", (), SINGLE_LABEL, ("accuracy",), "accuracy")
