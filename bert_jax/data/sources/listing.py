"""From the user's inputs (files, globs, directories, `tfds:` specs) to the ordered list of `InputShard`s, each read
by the reader its format needs; unusable inputs are an `InputError` naming the input and the fix."""

from __future__ import annotations

import glob
import os
import re
from typing import Iterator, Sequence

from bert_jax.data.sources.base import InputShard, SourceStats
from bert_jax.data.sources.files import COMPRESSED_SUFFIXES, JsonlShard, ParquetShard, TextFileShard
from bert_jax.data.sources.tfds_datasets import TFDS_PREFIX, tfds_shards
from bert_jax.errors import InputError

INPUT_FORMATS = ("auto", "text", "jsonl", "parquet")
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = re.compile(r"[*?\[]")


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


def _expand_files(pattern: str) -> list[str]:
    if os.path.isdir(pattern):
        found = []
        for directory, subdirectories, names in os.walk(pattern):
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
            found += [os.path.join(directory, name) for name in names if not name.startswith(".")]
        if not found:
            raise InputError(f"input directory {pattern!r} contains no files")
        return found
    if os.path.isfile(pattern):
        return [pattern]
    if _GLOB_CHARS.search(pattern):
        found = [path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path)]
        if not found:
            raise InputError(f"input pattern {pattern!r} matches no files; check the path and quote the pattern "
                             f"so the shell does not expand it")
        return found
    raise InputError(f"input {pattern!r} does not exist; pass files, directories, globs or tfds:NAME[split]")


def list_input_shards(inputs: Sequence[str], *, text_field: str = "text", input_format: str = "auto",
                      tfds_data_dir: str | None = None, tfds_records_per_shard: int = 100_000,
                      wiki_cleanup: bool = True) -> list[InputShard]:
    """The shards of all inputs: files (sorted, deduplicated) then TFDS record ranges in input order.

    `inputs` are file paths, globs, directories or `tfds:NAME[/CONFIG][:VERSION][split]`. `wiki_cleanup`
    applies to raw documents (JSONL, Parquet, TFDS) only: BERT-format text is already one sentence per line.
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise InputError("no input given: pass one or more files, directories, globs or tfds:NAME[split]")
    if input_format not in INPUT_FORMATS:
        raise InputError(f"unknown input format {input_format!r}; choose one of {list(INPUT_FORMATS)}")
    if tfds_records_per_shard < 1:
        raise InputError(f"tfds_records_per_shard must be positive, got {tfds_records_per_shard}")
    paths: set[str] = set()
    shards_of_tfds: list[InputShard] = []
    for item in inputs:
        if item.startswith(TFDS_PREFIX):
            shards_of_tfds += tfds_shards(item, text_field=text_field, data_dir=tfds_data_dir,
                                          records_per_shard=tfds_records_per_shard, wiki_cleanup=wiki_cleanup)
        else:
            paths.update(os.path.normpath(path) for path in _expand_files(item))
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
