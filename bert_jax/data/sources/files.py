"""File readers: BERT-format text, JSONL and Parquet files as `InputShard`s, with compressed, binary, corrupt and
overlong input counted rather than raised, and memory bounded by one line or row batch."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import os
import zlib
from typing import IO, Iterator

from bert_jax.data.sources import cleaning
from bert_jax.data.sources.base import InputShard, SourceStats
from bert_jax.data.sources.cleaning import (clean_text, decode_bytes, emit_document, keep_sentence,
                                            raw_document_sentences)
from bert_jax.errors import InputError

# A longer raw document (one JSONL line) is skipped and counted, so one bad line cannot exhaust memory.
MAX_DOCUMENT_BYTES = 64 * 2**20
# A file whose first bytes are mostly NUL, other control bytes or invalid UTF-8 is binary junk and is skipped.
BINARY_PROBE_BYTES = 64 * 1024
BINARY_FRACTION = 0.25
COMPRESSED_SUFFIXES = {".gz": gzip.open, ".bz2": bz2.open}


def _open_binary(path: str) -> IO[bytes]:
    opener = COMPRESSED_SUFFIXES.get(os.path.splitext(path)[1].lower(), open)
    return opener(path, "rb")  # type: ignore[operator]


def _is_binary(path: str) -> bool:
    with _open_binary(path) as f:
        probe = f.read(BINARY_PROBE_BYTES)
    if not probe:
        return False
    text = probe.decode("utf-8", errors="replace")
    bad = sum(1 for char in text if char == "\ufffd" or (ord(char) < 32 and char not in "\t\n\r\f"))
    return bad > BINARY_FRACTION * len(text)


def _bounded_lines(f: IO[bytes], max_bytes: int) -> Iterator[bytes | None]:
    """Lines of a binary stream; a line longer than `max_bytes` is skipped without being held and yields None."""
    while True:
        line = f.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:  # discard the rest of the overlong line in chunks
                rest = f.readline(2**16)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
        else:
            yield line


def _file_lines(path: str, stats: SourceStats, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of a (possibly compressed) file; a binary or corrupt file is counted, not raised."""
    try:
        if _is_binary(path):
            stats.note("binary_files_skipped", f"{path}: mostly NUL, control bytes or invalid UTF-8; skipped")
            return
        with _open_binary(path) as f:
            yield from enumerate(_bounded_lines(f, max_bytes), start=1)
    except (OSError, EOFError, zlib.error) as error:  # truncated or corrupt gzip/bz2, unreadable file
        stats.note("unreadable_files", f"{path}: cannot be read to the end ({error}); the rest is skipped")


@dataclasses.dataclass(frozen=True)
class TextFileShard(InputShard):
    """A BERT-format text file: one sentence per line, a blank line between documents."""

    path: str

    def documents(self, stats: SourceStats) -> Iterator[list[str]]:
        stats.count("files")
        sentences: list[str] = []
        had_lines = False
        # The caps are read from `cleaning` at run time, so one setting governs every reader.
        max_sentence_chars = cleaning.MAX_SENTENCE_CHARS
        # 4 bytes per character at most, so no line within the character cap is cut.
        for line_number, line in _file_lines(self.path, stats, 4 * max_sentence_chars):
            where = f"{self.path}:{line_number}"
            if line is None:
                stats.note("dropped_overlong_sentences",
                           f"{where}: line longer than {4 * max_sentence_chars:,} bytes; dropped")
                had_lines = True
                continue
            text = decode_bytes(line, stats).rstrip("\r\n")
            if not text.strip():  # a blank line ends the document, as in the original
                if had_lines:
                    yield from emit_document(sentences, stats)
                sentences, had_lines = [], False
                continue
            had_lines = True
            sentence = clean_text(text, stats)
            if keep_sentence(sentence, stats, where):
                sentences.append(sentence)
                if len(sentences) == cleaning.MAX_DOCUMENT_SENTENCES:  # bound memory on files without blank lines
                    yield from emit_document(sentences, stats)
                    stats.count("documents_split_at_cap")
                    sentences = []
        if had_lines:
            yield from emit_document(sentences, stats)


@dataclasses.dataclass(frozen=True)
class JsonlShard(InputShard):
    """A JSONL file of raw documents: one JSON object per line with the text in `text_field`."""

    path: str
    text_field: str = "text"
    wiki_cleanup: bool = True

    def documents(self, stats: SourceStats) -> Iterator[list[str]]:
        stats.count("files")
        good_lines = 0
        first_problem = ""
        for line_number, line in _file_lines(self.path, stats, MAX_DOCUMENT_BYTES):
            where = f"{self.path}:{line_number}"
            if line is None:
                stats.note("dropped_overlong_documents", f"{where}: line longer than {MAX_DOCUMENT_BYTES:,} bytes")
                continue
            text = decode_bytes(line, stats)
            if not text.strip():
                continue
            problem = ""
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                problem, counter = f"{where}: invalid JSON ({error.msg} at column {error.colno})", "invalid_json_lines"
            else:
                if not isinstance(record, dict) or self.text_field not in record:
                    keys = sorted(record)[:10] if isinstance(record, dict) else type(record).__name__
                    problem = (f"{where}: no field {self.text_field!r} (found {keys}); "
                               f"set --text_field to the field that holds the text")
                    counter = "missing_text_field"
                elif not isinstance(record[self.text_field], str):
                    problem = (f"{where}: field {self.text_field!r} is "
                               f"{type(record[self.text_field]).__name__}, not a string")
                    counter = "missing_text_field"
            if problem:
                stats.note(counter, problem)
                first_problem = first_problem or problem
                continue
            good_lines += 1
            yield from emit_document(
                raw_document_sentences(record[self.text_field], stats, where, wiki_cleanup=self.wiki_cleanup), stats)
        if good_lines == 0 and first_problem:
            raise InputError(f"no line of {self.path} holds a document: first problem at {first_problem}")


@dataclasses.dataclass(frozen=True)
class ParquetShard(InputShard):
    """A Parquet file of raw documents, read one row-group batch at a time."""

    path: str
    text_field: str = "text"
    wiki_cleanup: bool = True
    batch_rows: int = 1024

    def documents(self, stats: SourceStats) -> Iterator[list[str]]:
        import pyarrow.parquet as parquet

        stats.count("files")
        try:
            parquet_file = parquet.ParquetFile(self.path)
        except Exception as error:  # pyarrow raises ArrowInvalid/OSError for a file that is not Parquet
            raise InputError(f"{self.path}: not a readable Parquet file ({error})") from None
        columns = parquet_file.schema_arrow.names
        if self.text_field not in columns:
            raise InputError(f"{self.path}: no column {self.text_field!r} (columns: {columns}); "
                             f"set --text_field to the column that holds the text")
        row = 0
        for batch in parquet_file.iter_batches(batch_size=self.batch_rows, columns=[self.text_field]):
            for text in batch.column(0).to_pylist():
                where = f"{self.path}: row {row}"
                row += 1
                if not isinstance(text, str):
                    stats.note("missing_text_field", f"{where}: {self.text_field!r} is "
                                                     f"{'null' if text is None else type(text).__name__}")
                    continue
                yield from emit_document(
                    raw_document_sentences(text, stats, where, wiki_cleanup=self.wiki_cleanup), stats)
