"""GLUE's nine tasks read from the layout GLUE distributes: `glue_data/<TASK>/{train,dev}.tsv` (MNLI:
`dev_matched.tsv` and `dev_mismatched.tsv`), tab-separated without quoting, as transformers' GLUE processors read
them. Columns are found by the header's names, so a file with other columns is an error naming the file, the
columns it lacks and those it has; CoLA's train and dev files have no header (source, label, original label,
sentence). Label sets and their order are transformers' (`glue_processors[task].get_labels()`), so a model's
`id2label` matches one fine-tuned there.

Test splits (`read_test`, for GLUE submission files): `test.tsv` (MNLI: `test_matched.tsv`, `test_mismatched.tsv`)
with an index column (`index`; QQP's `id`) and the texts, no label; CoLA's test file has a header (index,
sentence). `--data tfds:glue/<config>[@DATA_DIR]` reads a prepared TFDS `glue/*` dataset instead (glue_tfds.py).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

from bert_jax.data.sources.tfds_datasets import TFDS_PREFIX
from bert_jax.data.tasks.base import (REGRESSION, SINGLE_LABEL, Example, Task, TaskData, TestSplit,
                                      check_not_empty, label_index, regression_value)
from bert_jax.errors import InputError

INDEX_COLUMNS = ("index", "id")  # a test file's example index: GLUE's `index`, QQP's `id`
BINARY = ("0", "1")
NLI_BINARY = ("entailment", "not_entailment")


@dataclasses.dataclass(frozen=True)
class GlueTask(Task):
    directory: str = ""  # the task's folder under glue_data (e.g. "SST-2"), for messages
    text_a: str = ""  # header name of the first text (CoLA: its column index, as a string)
    text_b: str | None = None  # header name of the second text, or None for a single-sentence task
    label: str = "label"  # header name of the label
    header: bool = True  # False: CoLA's headerless files, columns by position
    test_text_a: str = ""  # header name of the first text in the test file where it differs (CoLA: "sentence")
    test_splits: tuple[str, ...] = ("test",)  # file stems of the unlabelled test splits (MNLI has two)
    tfds_texts: tuple[str, ...] = ()  # TFDS glue/<name>'s feature names of the text(s)

    def read(self, path: str, settings: Any = None) -> TaskData:
        if not str(path).startswith(TFDS_PREFIX):
            return super().read(path, settings)
        from bert_jax.data.tasks import glue_tfds

        source = glue_tfds.GlueSource(str(path), self)
        metrics, best = self.metrics_for(self.problem_type)
        return TaskData(self.name, self.labels, self.problem_type, source.examples("train"),
                        {split: source.examples(split) for split in self.dev_splits}, metrics, best)

    def read_split(self, root: Path, split: str, labels: tuple[str, ...], settings: Any) -> list[Example]:
        path = root / f"{split}.tsv"
        if not path.is_file():
            raise InputError(f"{path} not found: GLUE's {self.directory} folder holds train.tsv and "
                             f"{', '.join(s + '.tsv' for s in self.dev_splits)}; pass --data glue_data/{self.directory}")
        rows = _rows(path)
        columns, width = self._columns(path, rows[0][1])
        examples = []
        for line, row in rows[1:] if self.header else rows:
            where = f"{path}:{line}"
            if len(row) != width:
                raise InputError(f"{where}: {len(row)} tab-separated fields where {self.directory}'s layout has "
                                 f"{width}: a field holds a tab or the line is cut; fix the line or remove it")
            raw_label = row[columns["label"]].strip()
            label = (regression_value(raw_label, where) if self.problem_type == REGRESSION
                     else label_index(raw_label, labels, where))
            text_b = row[columns["text_b"]] if self.text_b is not None else None
            examples.append(Example(row[columns["text_a"]], text_b, label))
        return check_not_empty(examples, path)

    def read_test(self, path: str) -> dict[str, TestSplit]:
        """The unlabelled test splits present under `path` (GLUE's folder or a `tfds:` spec), by split name."""
        if str(path).startswith(TFDS_PREFIX):
            from bert_jax.data.tasks import glue_tfds

            return glue_tfds.GlueSource(str(path), self).test_splits()
        files = {split: Path(path) / f"{split}.tsv" for split in self.test_splits}
        return {split: self.read_test_file(file) for split, file in files.items() if file.is_file()}

    def read_test_file(self, path: Path) -> TestSplit:
        """A test file of this task's layout (also GLUE's diagnostic.tsv with MNLI): the index column and the
        texts, found by the header's names."""
        rows = _rows(path)
        header = rows[0][1]
        wanted = [self.test_text_a or self.text_a] + ([self.text_b] if self.text_b is not None else [])
        index = next((name for name in INDEX_COLUMNS if name in header), None)
        missing = [name for name in wanted if name not in header] + ([] if index else ["index"])
        if missing:
            raise InputError(f"{path}:1: the header lacks the column(s) {missing} of {self.directory}'s test layout "
                             f"(it has {header}); is this the {self.directory} test file of GLUE's distribution?")
        positions = [header.index(name) for name in wanted]
        indices, examples = [], []
        for line, row in rows[1:]:
            if len(row) != len(header):
                raise InputError(f"{path}:{line}: {len(row)} tab-separated fields where the header has "
                                 f"{len(header)}: a field holds a tab or the line is cut; fix the line or remove it")
            indices.append(row[header.index(index)])
            texts = [row[i] for i in positions]
            examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, None))
        return TestSplit(indices, check_not_empty(examples, path))

    def _columns(self, path: Path, first_row: list[str]) -> tuple[dict[str, int], int]:
        """Column indices of the texts and the label, and the number of fields every row has: from the header, or
        CoLA's fixed positions."""
        wanted = {"text_a": self.text_a, "label": self.label}
        if self.text_b is not None:
            wanted["text_b"] = self.text_b
        if not self.header:
            return {key: int(value) for key, value in wanted.items()}, COLA_FIELDS
        missing = [name for name in wanted.values() if name not in first_row]
        if missing:
            raise InputError(f"{path}:1: the header lacks the column(s) {missing} of {self.directory}'s layout (it "
                             f"has {first_row}); is this the {self.directory} file of GLUE's distribution?")
        return {key: first_row.index(name) for key, name in wanted.items()}, len(first_row)


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty line of a GLUE TSV: tab-separated, no quoting."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [(reader.line_num, row) for row in reader if row and row != [""]]
    if not rows:
        raise InputError(f"{path} is empty: every split of a task needs at least one example")
    return rows


# CoLA's headerless train and dev files: source, label, original label, sentence.
COLA_FIELDS = 4
ACCURACY = ("accuracy",)
TASKS = {
    task.name: task
    for task in (
        GlueTask("cola", BINARY, SINGLE_LABEL, ("matthews_corrcoef", "accuracy"), "matthews_corrcoef",
                 directory="CoLA", text_a="3", label="1", header=False, test_text_a="sentence",
                 tfds_texts=("sentence",)),
        GlueTask("sst2", BINARY, SINGLE_LABEL, ACCURACY, "accuracy", directory="SST-2", text_a="sentence",
                 tfds_texts=("sentence",)),
        GlueTask("mrpc", BINARY, SINGLE_LABEL, ("f1", "accuracy"), "f1", directory="MRPC", text_a="#1 String",
                 text_b="#2 String", label="Quality", tfds_texts=("sentence1", "sentence2")),
        GlueTask("qqp", BINARY, SINGLE_LABEL, ("f1", "accuracy"), "f1", directory="QQP", text_a="question1",
                 text_b="question2", label="is_duplicate", tfds_texts=("question1", "question2")),
        GlueTask("stsb", (), REGRESSION, ("pearson", "spearmanr"), "pearson", directory="STS-B",
                 text_a="sentence1", text_b="sentence2", label="score", tfds_texts=("sentence1", "sentence2")),
        GlueTask("mnli", ("contradiction", "entailment", "neutral"), SINGLE_LABEL, ACCURACY, "accuracy",
                 dev_splits=("dev_matched", "dev_mismatched"), directory="MNLI", text_a="sentence1",
                 text_b="sentence2", label="gold_label", test_splits=("test_matched", "test_mismatched"),
                 tfds_texts=("premise", "hypothesis")),
        GlueTask("qnli", NLI_BINARY, SINGLE_LABEL, ACCURACY, "accuracy", directory="QNLI", text_a="question",
                 text_b="sentence", tfds_texts=("question", "sentence")),
        GlueTask("rte", NLI_BINARY, SINGLE_LABEL, ACCURACY, "accuracy", directory="RTE", text_a="sentence1",
                 text_b="sentence2", tfds_texts=("sentence1", "sentence2")),
        GlueTask("wnli", BINARY, SINGLE_LABEL, ACCURACY, "accuracy", directory="WNLI", text_a="sentence1",
                 text_b="sentence2", tfds_texts=("sentence1", "sentence2")),
    )
}
