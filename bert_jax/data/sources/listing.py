"""From the user's inputs (files, globs, directories, `tfds:` specs) to the ordered list of `InputShard`s, each read
by the reader its format needs; unusable inputs are an `InputError` naming the input and the fix."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

from bert_jax import storage
from bert_jax.data.sources.base import InputShard, SourceStats
from bert_jax.data.sources.corpus_files import expand_input
from bert_jax.data.sources.files import COMPRESSED_SUFFIXES, JsonlShard, ParquetShard, TextFileShard
from bert_jax.data.sources.tfds_datasets import TFDS_PREFIX, tfds_shards
from bert_jax.errors import InputError

INPUT_FORMATS = ("auto", "text", "jsonl", "parquet")
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _file_format(path: str, input_format: str) -> str:
    if input_format != "auto":
        return input_format
    stem = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        stem = stem.removesuffix(suffix)
    if stem.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if stem.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    return "text"


def list_input_shards(inputs: Sequence[str], *, text_field: str = "text", input_format: str = "auto",
                      tfds_data_dir: str | None = None, tfds_records_per_shard: int = 100_000,
                      wiki_cleanup: bool = True, exclude: Sequence[str] = (),
                      notes: list[str] | None = None) -> list[InputShard]:
    """The shards of all inputs: files (sorted, deduplicated) then TFDS record ranges in input order.

    `inputs` are file paths, globs, directories or `tfds:NAME[/CONFIG][:VERSION][split]`; a directory gives its
    corpus files only, and vocab, tokenizer and dataset files are never taken (`corpus_files`). `exclude`: files
    never to take either (the build's --vocab). `notes` receives what each directory or glob took and skipped, for
    the command to print. `wiki_cleanup` applies to raw documents (JSONL, Parquet, TFDS) only: BERT-format text is
    already one sentence per line.
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise InputError("no input given: pass one or more files, directories, globs or tfds:NAME[split]")
    if input_format not in INPUT_FORMATS:
        raise InputError(f"unknown input format {input_format!r}; choose one of {list(INPUT_FORMATS)}")
    if tfds_records_per_shard < 1:
        raise InputError(f"tfds_records_per_shard must be positive, got {tfds_records_per_shard}")
    excluded = {os.path.realpath(path) for path in exclude}
    paths: set[str] = set()
    shards_of_tfds: list[InputShard] = []
    for item in inputs:
        if item.startswith(TFDS_PREFIX):
            shards_of_tfds += tfds_shards(item, text_field=text_field, data_dir=tfds_data_dir,
                                          records_per_shard=tfds_records_per_shard, wiki_cleanup=wiki_cleanup)
        else:
            for local in storage.local_inputs(item):  # a gs:// input is read from its local mirror
                paths.update(os.path.normpath(path) for path in expand_input(local, excluded, notes))
    if paths and all(os.path.getsize(path) == 0 for path in paths):
        raise InputError(f"all input files are empty: {sorted(paths)[:5]}")
    shards: list[InputShard] = []
    for path in sorted(paths):
        kind = _file_format(path, input_format)
        if kind == "text":
            shards.append(TextFileShard(name=path, path=path))
        elif kind == "jsonl":
            shards.append(JsonlShard(name=path, path=path, text_field=text_field, wiki_cleanup=wiki_cleanup))
        else:
            shards.append(ParquetShard(name=path, path=path, text_field=text_field, wiki_cleanup=wiki_cleanup))
    return shards + shards_of_tfds


def iterate_documents(shards: Sequence[InputShard], stats: SourceStats) -> Iterator[list[str]]:
    """All documents of `shards` in order (single process)."""
    for shard in shards:
        yield from shard.documents(stats)
