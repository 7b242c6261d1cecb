"""Corpus readers: BERT-format text, JSONL/Parquet documents and TFDS datasets, cleaned as the original BERT.

Every input becomes a list of `InputShard`s (picklable units of parallel work); a shard streams its documents,
each a list of cleaned, non-empty sentences. Memory is bounded by one document (and a document is cut into parts
of at most `cleaning.MAX_DOCUMENT_SENTENCES` sentences), whatever the file size.

Input kinds:
- BERT-format text (`.txt`, optionally `.gz`/`.bz2`): one sentence per line, a blank line between documents.
- Raw documents that need sentence splitting: JSONL (`.jsonl`, `.json`, `.ndjson`, optionally compressed) and
  Parquet with a text field, and TFDS datasets (`tfds:NAME[/CONFIG][:VERSION][split]`). Their text goes through
  the Wikipedia-style cleanup (lists, tables and section headers dropped, as BERT's corpus description says)
  and then sentence splitting with `sentencex` (see docs/data_vocab.md for why sentencex).

Cleaning follows google-research/bert `tokenization.py` `_clean_text`: NUL, U+FFFD and control characters
(Unicode category C*, except tab/newline/carriage return, which are whitespace) are removed and whitespace is
normalised. Bytes are decoded with `errors="replace"`: invalid UTF-8 never crashes a build, and the replacement
characters that decoding introduced are counted before the cleaning drops them. Everything dropped is counted in
`SourceStats` by reason; the first few occurrences of each problem are also logged with file and line.

Modules, one job each: `base` (the shard and counter types), `cleaning` (text cleaning, sentence splitting, size
caps), `files` (text/JSONL/Parquet readers), `tfds_datasets` (TFDS), `listing` (inputs -> shards).
"""

from bert_jax.data.sources.base import InputShard, SourceStats
from bert_jax.data.sources.cleaning import (classify_raw_line, clean_text, decode_bytes, raw_document_sentences,
                                            split_sentences)
from bert_jax.data.sources.files import JsonlShard, ParquetShard, TextFileShard
from bert_jax.data.sources.listing import INPUT_FORMATS, iterate_documents, list_input_shards
from bert_jax.data.sources.tfds_datasets import TFDS_PREFIX, TfdsShard, parse_tfds_spec

__all__ = [
    "INPUT_FORMATS", "TFDS_PREFIX", "InputShard", "JsonlShard", "ParquetShard", "SourceStats", "TextFileShard",
    "TfdsShard", "classify_raw_line", "clean_text", "decode_bytes", "iterate_documents", "list_input_shards",
    "parse_tfds_spec", "raw_document_sentences", "split_sentences",
]
