"""Multiple choice on SWAG's layout: the `swag` task. `--data DIR` holds `train.csv` and `val.csv` as SWAG ships
them (or `dev`; or JSONL/Parquet of the same columns, as a `datasets` export): columns `sent1` (the context),
`sent2` (the start of the next sentence), `ending0`..`ending3` and `label` (the right ending's index).

As transformers' `run_swag.py`, choice i pairs the context (first text) with `sent2 + " " + ending_i` (second text).
Any table of that shape reads with column arguments (`config.finetune`): `text_a` (the context; default sent1),
`text_b` (the header put before each ending; default sent2), `label_column` (default label) and `choice_columns`
(the endings; [] = the header's ending0, ending1, ... in order). The label set is the choice indices 0..C-1.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from bert_jax.data.tasks import tables
from bert_jax.data.tasks.base import Task, check_not_empty
from bert_jax.data.tasks.split_files import find_split, setting
from bert_jax.errors import InputError

STEMS = {"train": ("train",), "dev": ("val", "dev", "validation")}
EXTENSIONS = (".csv", ".jsonl", ".parquet")
ENDING = re.compile(r"^ending(\d+)$")


@dataclasses.dataclass(frozen=True)
class ChoiceExample:
    context: str  # the first text of every choice
    choices: tuple[str, ...]  # the second text of each choice: header + " " + ending
    label: int  # the index of the right choice


def split_path(root: Path, split: str) -> Path:
    return find_split(root, STEMS[split], EXTENSIONS, "swag")


def columns(settings: Any) -> tuple[str, str, str]:
    return (setting(settings, "text_a", "sent1"), setting(settings, "text_b", "sent2"),
            setting(settings, "label_column", "label"))


def choice_columns(path: Path, settings: Any) -> list[str]:
    """`config.finetune.choice_columns`, else the file's `endingN` columns by N."""
    given = list(setting(settings, "choice_columns", []))
    if given:
        return given
    for where, row in tables.rows(path):
        found = sorted((int(m.group(1)), name) for name in row if name and (m := ENDING.match(name)))
        if not found:
            raise InputError(f"{where}: no ending0, ending1, ... columns (the row has {sorted(map(str, row))}); "
                             "name the choices' columns with --config.finetune.choice_columns=[...]")
        return [name for _, name in found]
    raise InputError(f"{path} holds no rows: every split of a task needs at least one example")


def _text(row: dict, column: str, where: str, what: str) -> str:
    if column not in row:
        raise InputError(f"{where}: no column {column!r} ({what}); the row has {sorted(map(str, row))}")
    value = row[column]
    if value is None:
        raise InputError(f"{where}: no value in column {column!r} ({what}): the line has fewer fields than the "
                         "header; fix the line")
    return str(value)


class ChoiceTask(Task):
    def label_names(self, root: Path, settings: Any) -> tuple[str, ...]:
        return tuple(str(i) for i in range(len(choice_columns(split_path(root, "train"), settings))))

    def read_split(self, root: Path, split: str, labels: tuple[str, ...], settings: Any) -> list[ChoiceExample]:
        path = split_path(root, split)
        context, header, label_column = columns(settings)
        endings = choice_columns(path, settings)
        if len(endings) != len(labels):
            raise InputError(f"{path}: {len(endings)} choice columns {endings} where the train split has "
                             f"{len(labels)}: every split needs the same number of choices")
        examples = []
        for where, row in tables.rows(path):
            if None in row:  # csv.DictReader's key for the fields beyond the header's
                raise InputError(f"{where}: more fields than the header's {len(row) - 1}; a field holds an unquoted "
                                 "comma: quote it or fix the line")
            head = _text(row, header, where, "config.finetune.text_b, the start of every ending")
            choices = tuple(f"{head} {_text(row, c, where, 'a choice')}" for c in endings)
            raw = _text(row, label_column, where, "config.finetune.label_column").strip()
            if raw not in labels:
                raise InputError(f"{where}: label {raw!r} is not a choice index 0..{len(labels) - 1}; the label is "
                                 "the index of the right ending")
            examples.append(ChoiceExample(_text(row, context, where, "config.finetune.text_a, the context"),
                                          choices, int(raw)))
        return check_not_empty(examples, path)


# Accuracy of the chosen ending, as run_swag.py.
SWAG = ChoiceTask("swag", (), "", ("accuracy",), "accuracy", objective="multiple_choice")
