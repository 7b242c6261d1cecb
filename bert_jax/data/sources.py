"""Corpus readers: BERT-format text, JSONL/Parquet documents and TFDS datasets, cleaned as the original BERT.

Every input becomes a list of `InputShard`s (picklable units of parallel work); a shard streams its documents,
each a list of cleaned, non-empty sentences. Memory is bounded by one document (and a document is cut into parts
of at most `MAX_DOCUMENT_SENTENCES` sentences), whatever the file size.

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
"""

from __future__ import annotations

import bz2
import collections
import dataclasses
import functools
import glob
import gzip
import json
import logging
import os
import re
import sys
import unicodedata
import zlib
from typing import IO, Iterator, Mapping, Sequence

logger = logging.getLogger(__name__)

# A "sentence" longer than this is not language (a base64 blob, a 10 MB "word"): it is dropped and counted.
MAX_SENTENCE_CHARS = 100_000
# A longer raw document (one JSONL line) is skipped and counted, so one bad line cannot exhaust memory.
MAX_DOCUMENT_BYTES = 64 * 2**20
# Longer documents are emitted in parts, which keeps a worker's memory bounded on a file without blank lines.
MAX_DOCUMENT_SENTENCES = 50_000
# A file whose first bytes are mostly NUL, other control bytes or invalid UTF-8 is binary junk and is skipped.
BINARY_PROBE_BYTES = 64 * 1024
BINARY_FRACTION = 0.25
# Problems of one kind logged with their location; the rest are only counted.
MAX_LOGGED_PER_PROBLEM = 5
SENTENCE_SPLITTER_LANGUAGE = "en"

INPUT_FORMATS = ("auto", "text", "jsonl", "parquet")
TFDS_PREFIX = "tfds:"
_COMPRESSED_SUFFIXES = {".gz": gzip.open, ".bz2": bz2.open}
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = re.compile(r"[*?\[]")


class InputError(ValueError):
    """A problem with the user's input, with a message that names the file/field and the fix."""


class SourceStats:
    """Named counters of what was read, cleaned and dropped; picklable and mergeable across workers.

    `notes` keeps the first few located messages ("file:line: why") per counter, so a report can show where.
    """

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts: collections.Counter[str] = collections.Counter(counts or {})
        self.notes: dict[str, list[str]] = {}

    def count(self, name: str, n: int = 1) -> None:
        if n:
            self.counts[name] += n

    def note(self, name: str, message: str) -> None:
        """Counts one occurrence of problem `name` and remembers (and logs) the first few locations."""
        self.counts[name] += 1
        examples = self.notes.setdefault(name, [])
        if len(examples) < MAX_LOGGED_PER_PROBLEM:
            examples.append(message)
            logger.warning("%s (%s)", message, name)

    def merge(self, other: "SourceStats") -> "SourceStats":
        self.counts.update(other.counts)
        for name, messages in other.notes.items():
            examples = self.notes.setdefault(name, [])
            examples.extend(messages[: MAX_LOGGED_PER_PROBLEM - len(examples)])
        return self

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceStats) and self.counts == other.counts

    def __repr__(self) -> str:
        return f"SourceStats({self.to_dict()})"


# ---------------------------------------------------------------------------------------------------------------
# Cleaning, as BERT's tokenization.py `_clean_text`.

@functools.cache
def _removed_chars_pattern() -> re.Pattern[str]:
    """Matches what BERT's _clean_text drops: NUL, U+FFFD and category C* except tab/newline/CR."""
    ranges: list[tuple[int, int]] = []
    for code_point in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code_point)).startswith("C") and chr(code_point) not in "\t\n\r":
            if ranges and ranges[-1][1] == code_point - 1:
                ranges[-1] = (ranges[-1][0], code_point)
            else:
                ranges.append((code_point, code_point))
    ranges.append((0xFFFD, 0xFFFD))
    char_class = "".join(re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
                         for low, high in ranges)
    return re.compile(f"[{char_class}]+")


def clean_text(text: str, stats: SourceStats) -> str:
    """BERT's `_clean_text` plus whitespace normalisation.

    Removed U+FFFD are counted as `replacement_chars_removed` (those that decoding introduced are also counted
    as `invalid_utf8_replaced` by `decode_bytes`), all other removed characters as `control_chars_removed`.
    """
    if text.isprintable() and "\ufffd" not in text:
        # Fast path for most lines: isprintable() is False for every category C* character (and most Z*).
        return " ".join(text.split())
    cleaned = _removed_chars_pattern().sub("", text)
    replacements = text.count("\ufffd")
    stats.count("replacement_chars_removed", replacements)
    stats.count("control_chars_removed", len(text) - len(cleaned) - replacements)
    # str.split() splits on every Unicode whitespace (Zs, tab, newline, ...), which BERT also maps to a space.
    return " ".join(cleaned.split())


def decode_bytes(data: bytes, stats: SourceStats) -> str:
    """UTF-8 with invalid bytes replaced; counts the U+FFFD that decoding introduced (not those in the source)."""
    text = data.decode("utf-8", errors="replace")
    introduced = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    if introduced:
        stats.count("invalid_utf8_replaced", introduced)
    return text


def _keep_sentence(sentence: str, stats: SourceStats, where: str) -> bool:
    if not sentence:
        stats.count("empty_lines")
        return False
    if len(sentence) > MAX_SENTENCE_CHARS:
        stats.note("dropped_overlong_sentences",
                   f"{where}: sentence of {len(sentence):,} characters exceeds {MAX_SENTENCE_CHARS:,}; dropped")
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Wikipedia-style cleanup and sentence splitting of raw documents.

_LIST_LINE = re.compile(r"^(?:[*#•·▪◦‣+\-–—]|\d{1,3}[.)](?=\s))")
_TABLE_LINE = re.compile(r"^(?:\{\||\|\}|\|-|\||!)")
_HEADER_LINE = re.compile(r"^(=+).*?\1$")
# A line ending like this is prose, not a title.
_FINAL_PUNCTUATION = tuple(".!?:;…\"'”’»)]。！？")
# Longer unpunctuated lines are kept as prose; shorter ones are section titles ("Early life", "See also").
MAX_TITLE_WORDS = 8


def classify_raw_line(line: str) -> str | None:
    """Why a stripped line of a raw document is dropped ("list", "table", "header"), or None to keep it."""
    if _TABLE_LINE.match(line) or line.count("||") >= 1 or line.count(" | ") >= 2:
        return "table"
    if _LIST_LINE.match(line):
        return "list"
    if _HEADER_LINE.match(line):
        return "header"
    if not line.endswith(_FINAL_PUNCTUATION) and len(line.split()) <= MAX_TITLE_WORDS:
        return "header"
    return None


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a cleaned paragraph, by sentencex (abbreviation-aware, offline)."""
    import sentencex  # imported here: BERT-format text never needs it

    return [sentence.strip() for sentence in sentencex.segment(SENTENCE_SPLITTER_LANGUAGE, paragraph)
            if sentence.strip()]


def raw_document_sentences(text: str, stats: SourceStats, where: str, *, wiki_cleanup: bool = True) -> list[str]:
    """Cleanup, cleaning and sentence splitting of one raw document; lines are paragraphs."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue  # paragraph break
        if wiki_cleanup:
            reason = classify_raw_line(line)
            if reason is not None:
                stats.count(f"dropped_{reason}_lines")
                continue
        paragraph = clean_text(line, stats)
        if not paragraph:
            stats.count("empty_lines")
            continue
        for sentence in split_sentences(paragraph):
            if _keep_sentence(sentence, stats, where):
                sentences.append(sentence)
    return sentences


def _emit_document(sentences: list[str], stats: SourceStats) -> Iterator[list[str]]:
    if not sentences:
        stats.count("empty_documents")
        return
    for start in range(0, len(sentences), MAX_DOCUMENT_SENTENCES):
        if start:
            stats.count("documents_split_at_cap")
        part = sentences[start:start + MAX_DOCUMENT_SENTENCES]
        stats.count("documents")
        stats.count("sentences", len(part))
        yield part


# ---------------------------------------------------------------------------------------------------------------
# Files.

def _open_binary(path: str) -> IO[bytes]:
    opener = _COMPRESSED_SUFFIXES.get(os.path.splitext(path)[1].lower(), open)
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
class InputShard:
    """A unit of parallel work with a stable name; `documents` streams lists of cleaned sentences."""

    name: str

    def documents(self, stats: SourceStats) -> Iterator[list[str]]:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TextFileShard(InputShard):
    """A BERT-format text file: one sentence per line, a blank line between documents."""

    path: str

    def documents(self, stats: SourceStats) -> Iterator[list[str]]:
        stats.count("files")
        sentences: list[str] = []
        had_lines = False
        # 4 bytes per character at most, so no line within the character cap is cut.
        for line_number, line in _file_lines(self.path, stats, 4 * MAX_SENTENCE_CHARS):
            where = f"{self.path}:{line_number}"
            if line is None:
                stats.note("dropped_overlong_sentences",
                           f"{where}: line longer than {4 * MAX_SENTENCE_CHARS:,} bytes; dropped")
                had_lines = True
                continue
            text = decode_bytes(line, stats).rstrip("\r\n")
            if not text.strip():  # a blank line ends the document, as in the original
                if had_lines:
                    yield from _emit_document(sentences, stats)
                sentences, had_lines = [], False
                continue
            had_lines = True
            sentence = clean_text(text, stats)
            if _keep_sentence(sentence, stats, where):
                sentences.append(sentence)
                if len(sentences) == MAX_DOCUMENT_SENTENCES:  # bound memory on files without blank lines
                    yield from _emit_document(sentences, stats)
                    stats.count("documents_split_at_cap")
                    sentences = []
        if had_lines:
            yield from _emit_document(sentences, stats)


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
            yield from _emit_document(
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
                yield from _emit_document(
                    raw_document_sentences(text, stats, where, wiki_cleanup=self.wiki_cleanup), stats)


# ---------------------------------------------------------------------------------------------------------------
# TFDS.

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


def _tfds_builder(name: str, data_dir: str | None, spec: str):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and friends; their messages list all of TFDS
        raise InputError(f"{spec}: TFDS dataset {name!r} not found in data dir {data_dir or '(TFDS default)'} "
                         f"({type(error).__name__}); prepare it with `tfds build {name} --data_dir DIR "
                         f"--file_format=array_record` and pass --tfds_data_dir DIR") from None
    if not builder.is_prepared():
        raise InputError(f"{spec}: TFDS dataset {name!r} is not prepared in {builder.data_dir}; prepare it with "
                         f"`tfds build {name} --data_dir DIR --file_format=array_record`")
    return builder


def _tensorflow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def _random_access(builder) -> bool:
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

        builder = _tfds_builder(self.dataset, self.data_dir, self.name)
        if _random_access(builder):
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
        yield from _emit_document(raw_document_sentences(text, stats, where, wiki_cleanup=self.wiki_cleanup), stats)


def _tfds_shards(spec: str, *, text_field: str, data_dir: str | None, records_per_shard: int,
                 wiki_cleanup: bool) -> list[InputShard]:
    import tensorflow_datasets as tfds

    name, split = parse_tfds_spec(spec)
    builder = _tfds_builder(name, data_dir, spec)
    features = sorted(builder.info.features.keys()) if hasattr(builder.info.features, "keys") else []
    if features and text_field not in features:
        raise InputError(f"{spec}: no feature {text_field!r} (features: {features}); "
                         f"set --text_field to the feature that holds the text")
    common = dict(dataset=name, split=split, text_field=text_field, data_dir=data_dir, wiki_cleanup=wiki_cleanup)
    if not _random_access(builder):
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


# ---------------------------------------------------------------------------------------------------------------
# Listing.

def _file_format(path: str, input_format: str) -> str:
    if input_format != "auto":
        return input_format
    stem = path.lower()
    for suffix in _COMPRESSED_SUFFIXES:
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
    tfds_shards: list[InputShard] = []
    for item in inputs:
        if item.startswith(TFDS_PREFIX):
            tfds_shards += _tfds_shards(item, text_field=text_field, data_dir=tfds_data_dir,
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
    return shards + tfds_shards


def iterate_documents(shards: Sequence[InputShard], stats: SourceStats) -> Iterator[list[str]]:
    """All documents of `shards` in order (single process)."""
    for shard in shards:
        yield from shard.documents(stats)
