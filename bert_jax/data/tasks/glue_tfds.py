"""GLUE from a prepared TFDS dataset: `--data tfds:glue/<config>[@DATA_DIR]` (or `tfds:glue[@DATA_DIR]`, the
task's own config), read with `tfds.data_source` (random access to the ArrayRecord files; no TensorFlow). TFDS's
splits are `train`, `validation` and `test` (MNLI: `validation_matched`, `validation_mismatched`, `test_matched`,
`test_mismatched`); its feature names (`sentence`, `question1`, `premise`, `hypothesis`, ..., `idx`, `label`) map
to the task's texts. TFDS's label classes are names (`negative`/`positive`, `entailment`/`neutral`/
`contradiction`): the NLI names map to ours by name (MNLI's order differs from transformers'), the binary tasks' by
index (TFDS's class i is GLUE's label i). TFDS is imported here only, when such a spec is given.
"""

from __future__ import annotations

from typing import Any

from bert_jax.data.sources.tfds_datasets import TFDS_PREFIX
from bert_jax.data.tasks.base import REGRESSION, Example, TestSplit, check_not_empty
from bert_jax.errors import InputError

# Our split names -> TFDS glue's.
SPLITS = {"train": "train", "dev": "validation", "dev_matched": "validation_matched",
          "dev_mismatched": "validation_mismatched", "test": "test", "test_matched": "test_matched",
          "test_mismatched": "test_mismatched"}
READ_BATCH = 1024  # records per random-access read


def parse(spec: str, task_name: str) -> tuple[str, str | None]:
    """`tfds:glue[/CONFIG][:VERSION][@DATA_DIR]` -> (TFDS name with the task's config, data dir or None)."""
    body, _, data_dir = spec[len(TFDS_PREFIX):].partition("@")
    dataset, _, config = body.partition("/")
    config_name = config.split(":")[0]
    if dataset != "glue":
        raise InputError(f"--data {spec}: a GLUE task reads TFDS's glue dataset: tfds:glue/{task_name}[@DATA_DIR]")
    if config_name and config_name != task_name:
        raise InputError(f"--data {spec} is TFDS's glue/{config_name}, not the task {task_name}: pass "
                         f"tfds:glue/{task_name} or --task {config_name}")
    return f"glue/{config or task_name}", data_dir or None


class GlueSource:
    """A prepared TFDS glue/<config> dataset as the task's examples."""

    def __init__(self, spec: str, task: Any) -> None:
        from bert_jax.data.sources.tfds_datasets import prepared_builder, random_access

        self.spec, self.task = spec, task
        self.name, self.data_dir = parse(spec, task.name)
        pass_data_dir = f"pass --data tfds:{self.name}@DIR"
        self.builder = prepared_builder(self.name, self.data_dir, spec, pass_data_dir)
        if not random_access(self.builder):
            raise InputError(f"{spec}: the prepared dataset is in {self.builder.info.file_format.value} form, which "
                             f"tfds.data_source cannot read; rebuild it with `tfds build {self.name} --data_dir DIR "
                             f"--file_format=array_record`")
        self.label_map = self._label_map()

    def _label_map(self) -> list[int] | None:
        """TFDS class index -> the task's label index (None for regression)."""
        if self.task.problem_type == REGRESSION:
            return None
        names = list(self.builder.info.features["label"].names)
        ours = self.task.labels
        if sorted(names) == sorted(ours):
            return [ours.index(name) for name in names]
        if len(names) == len(ours) == 2:  # the 0/1 tasks: TFDS's builder casts GLUE's 0/1 labels to class 0/1
            return [0, 1]
        raise InputError(f"{self.spec}: TFDS's label classes {names} do not match the task's {list(ours)}")

    def _records(self, split: str) -> list[dict]:
        import tensorflow_datasets as tfds

        name = SPLITS[split]
        if name not in self.builder.info.splits:
            raise InputError(f"{self.spec}: the prepared dataset has no split {name!r} (it has "
                             f"{sorted(self.builder.info.splits)})")
        source = tfds.data_source(self.name, split=name, data_dir=self.data_dir, download=False)
        records = []
        for start in range(0, len(source), READ_BATCH):
            records += source.__getitems__(list(range(start, min(start + READ_BATCH, len(source)))))
        return records

    def _texts(self, record: dict, split: str) -> tuple[str, str | None]:
        missing = [name for name in self.task.tfds_texts if name not in record]
        if missing:
            raise InputError(f"{self.spec} [{SPLITS[split]}]: no feature(s) {missing} (features: {sorted(record)}); "
                             f"is this TFDS's {self.name}?")
        texts = [_text(record[name]) for name in self.task.tfds_texts]
        return texts[0], texts[1] if len(texts) > 1 else None

    def examples(self, split: str) -> list[Example]:
        """A labelled split (train or dev) as the task's examples."""
        out = []
        for record in self._records(split):
            label = (float(record["label"]) if self.label_map is None
                     else self.label_map[int(record["label"])])
            out.append(Example(*self._texts(record, split), label))
        return check_not_empty(out, f"{self.spec} [{SPLITS[split]}]")

    def test_splits(self) -> dict:
        """The unlabelled test splits the dataset has, with GLUE's example indices (`idx`)."""
        splits = {}
        for split in self.task.test_splits:
            if SPLITS[split] in self.builder.info.splits:
                records = sorted(self._records(split), key=lambda r: int(r["idx"]))  # TFDS stores them shuffled
                splits[split] = TestSplit([str(int(r["idx"])) for r in records],
                                          [Example(*self._texts(r, split), None) for r in records])
        return splits


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
