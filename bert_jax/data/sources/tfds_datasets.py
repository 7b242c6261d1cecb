"""TFDS datasets as input: `tfds:NAME[/CONFIG][:VERSION][split]` split into record-range `InputShard`s, read with
`tfds.data_source` (no TensorFlow needed) or, for TFRecord-only datasets, TFDS's own reader."""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

from bert_jax.data.sources.base import InputShard, SourceStats
from bert_jax.data.sources.cleaning import decode_bytes, emit_document, raw_document_sentences
from bert_jax.errors import InputError

TFDS_PREFIX = "tfds:"


def parse_tfds_spec(spec: str) -> tuple[str, str]:
    """`tfds:NAME[/CONFIG][:VERSION][split]` -> (name, split); the split defaults to `train`."""
    example = "e.g. tfds:wikipedia/20230601.en[train]"
    body = spec[len(TFDS_PREFIX):]
    if "[" in body:
        if not body.endswith("]"):
            raise InputError(f"{spec!r}: the split must be in brackets at the end, {example}")
        name, split = body[: body.index("[")], body[body.index("[") + 1: -1]
    else:
        name, split = body, "train"
    if not name or not split:
        raise InputError(f"{spec!r}: expected tfds:NAME[/CONFIG][:VERSION][split], {example}")
    return name, split


def prepared_builder(name: str, data_dir: str | None, spec: str, pass_data_dir: str = "pass --tfds_data_dir DIR"):
    """TFDS's builder of `name` in `data_dir`, which must be prepared; else one line saying how to prepare it
    (`pass_data_dir`: how the command is told the data dir)."""
    import tensorflow_datasets as tfds

    prepare = f"prepare it with `tfds build {name} --data_dir DIR --file_format=array_record` (downloads it)"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and friends; their messages list all of TFDS
        raise InputError(f"{spec}: TFDS dataset {name!r} not found in data dir {data_dir or '(TFDS default)'} "
                         f"({type(error).__name__}); {prepare} and {pass_data_dir}") from None
    if not builder.is_prepared():
        raise InputError(f"{spec}: TFDS dataset {name!r} is not prepared in {builder.data_dir}; {prepare} and "
                         f"{pass_data_dir}")
    return builder


def _tensorflow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def random_access(builder) -> bool:
    import tensorflow_datasets as tfds

    return builder.info.file_format in (tfds.core.FileFormat.ARRAY_RECORD, tfds.core.FileFormat.PARQUET)


@dataclasses.dataclass(frozen=True)
class TfdsShard(InputShard):
    """Records [start, stop) of a TFDS split, read with `tfds.data_source` (no TensorFlow needed)."""

    dataset: str
    split: str
    start: int
    stop: int
    text_field: str = "text"
    data_dir: str | None = None
    wiki_cleanup: bool = True
    read_batch: int = 256

    def documents(self, stats: SourceStats) -> Iterator[list[str]]:
        import tensorflow_datasets as tfds

        builder = prepared_builder(self.dataset, self.data_dir, self.name)
        if random_access(builder):
            source = tfds.data_source(self.dataset, split=self.split, data_dir=self.data_dir, download=False)
            for batch_start in range(self.start, self.stop, self.read_batch):
                indices = list(range(batch_start, min(batch_start + self.read_batch, self.stop)))
                for index, record in zip(indices, source.__getitems__(indices)):
                    yield from self._document(record, index, stats)
        else:  # TFRecord-only dataset: TFDS's own reader, which needs TensorFlow (checked when listing)
            split = self.split if (self.start, self.stop) == (0, -1) else f"{self.split}[{self.start}:{self.stop}]"
            dataset = builder.as_dataset(split=split, shuffle_files=False)
            for index, record in enumerate(tfds.as_numpy(dataset), start=max(self.start, 0)):
                yield from self._document(record, index, stats)

    def _document(self, record: Mapping, index: int, stats: SourceStats) -> Iterator[list[str]]:
        where = f"{self.name} record {index}"
        stats.count("records_read")
        if self.text_field not in record:
            raise InputError(f"{where}: no feature {self.text_field!r} (features: {sorted(record)}); "
                             f"set --text_field to the feature that holds the text")
        value = record[self.text_field]
        text = decode_bytes(value, stats) if isinstance(value, bytes) else str(value)
        yield from emit_document(raw_document_sentences(text, stats, where, wiki_cleanup=self.wiki_cleanup), stats)


def tfds_shards(spec: str, *, text_field: str, data_dir: str | None, records_per_shard: int,
                wiki_cleanup: bool) -> list[InputShard]:
    """The record-range shards of one `tfds:` input; checks the dataset, split and text feature first."""
    import tensorflow_datasets as tfds

    name, split = parse_tfds_spec(spec)
    builder = prepared_builder(name, data_dir, spec)
    features = sorted(builder.info.features.keys()) if hasattr(builder.info.features, "keys") else []
    if features and text_field not in features:
        raise InputError(f"{spec}: no feature {text_field!r} (features: {features}); "
                         f"set --text_field to the feature that holds the text")
    common = dict(dataset=name, split=split, text_field=text_field, data_dir=data_dir, wiki_cleanup=wiki_cleanup)
    if not random_access(builder):
        if not _tensorflow_available():
            raise InputError(f"{spec}: the prepared dataset is in {builder.info.file_format.value} form, which "
                             f"tfds.data_source cannot read; rebuild it with `tfds build {name} "
                             f"--file_format=array_record` or install tensorflow to use TFDS's own reader")
        if "[" in split:  # an already sliced split cannot be sliced again: one shard
            return [TfdsShard(name=spec, start=0, stop=-1, **common)]
        total = builder.info.splits[split].num_examples
    else:
        try:
            total = len(tfds.data_source(name, split=split, data_dir=data_dir, download=False))
        except ValueError as error:  # unknown split or bad slice syntax
            raise InputError(f"{spec}: {error}") from None
    if total == 0:
        raise InputError(f"{spec}: split {split!r} has no records")
    return [TfdsShard(name=f"{TFDS_PREFIX}{name}[{split}][{start}:{min(start + records_per_shard, total)}]",
                      start=start, stop=min(start + records_per_shard, total), **common)
            for start in range(0, total, records_per_shard)]
