"""How often each token id occurs in a built dataset's train examples, per sequence length: what frequency-smoothed
masking (`MaskingConfig.frequency_smoothing`, DistilBERT's `mlm_smoothing`) weighs tokens by.

    DATA_DIR/token_counts.seq_L.npy   int64 [vocab size]: occurrences of each id in the train examples of seq_L

What counts: every input token of every train example of that length as the record stores it (unmasked), [CLS]/[SEP]
(`<s>`/`</s>`) included, once per example, so every dupe_factor copy and every random-next segment counts. These are
the frequencies of the stream the model is trained on at that length, as Hugging Face's distillation
`token_counts.py` counts its binarized training sequences; eval examples never count. A count is therefore the
same whoever makes it: the builder (each part counts the train records it writes, the merge sums the parts) or
`load_or_count` for a directory built before the file existed (it reads the train split once, with progress on
stderr). The CLI, `count_tokens.py`, makes the file ahead of a run: once before a multi-host job (otherwise every
host counts), or on a machine that can write the directory.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Sequence

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader

from bert_jax import fileio
from bert_jax.data import records
from bert_jax.data.build_layout import token_counts_path
from bert_jax.errors import InputError

COMMAND = "python -m bert_jax.data.count_tokens"  # the CLI that makes the files ahead of a run
_RECORDS_PER_BATCH = 8192  # records counted at once (and read at once from a shard)
# What every record format shares (records.py): byte 0 the format, byte 2 the token dtype, ids from byte 8 on.
_RECORD_FORMATS = (records.FORMAT_VERSION, records.PACKED_FORMAT_VERSION)
_TOKEN_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_TOKENS_OFFSET = 8
_PROGRESS_SECONDS = 5.0


def record_token_ids(record: bytes) -> np.ndarray:
    """The token ids a record of either format holds (`records.py`: from byte 8 on, in the dtype byte 2 names), as a
    view: the builder counts every train record it writes, and a full `decode` would cost it ~3x as much."""
    if len(record) < _TOKENS_OFFSET or record[0] not in _RECORD_FORMATS or record[2] not in _TOKEN_DTYPES:
        raise InputError(f"record of {len(record)} bytes starting {bytes(record[:4])!r} is not a bert_jax example "
                         f"record: rebuild the dataset with `python -m bert_jax.data.build`")
    return np.frombuffer(record, _TOKEN_DTYPES[record[2]], offset=_TOKENS_OFFSET)


class TokenCounter:
    """Counts the token ids of records in [0, vocab_size)."""

    def __init__(self, vocab_size: int) -> None:
        self._counts = np.zeros(vocab_size, dtype=np.int64)

    def add_records(self, batch: Sequence[bytes]) -> None:
        """One bincount for many records: its cost is mostly its [vocab size] output, per record it would dominate."""
        if not batch:
            return
        ids = np.concatenate([record_token_ids(record) for record in batch])
        if ids.size and int(ids.max()) >= len(self._counts):
            raise InputError(f"token id {int(ids.max())} is not below the vocab size {len(self._counts)}: the "
                             f"examples were not built with this directory's vocab; rebuild the dataset")
        self._counts += np.bincount(ids, minlength=len(self._counts))

    def counts(self) -> np.ndarray:
        return self._counts.copy()


class CountingWriter:
    """A record writer for the build that passes each record on to `write` and counts its tokens, in batches."""

    def __init__(self, write: Callable[[bytes], None], vocab_size: int) -> None:
        self._write = write
        self._counter = TokenCounter(vocab_size)
        self._held: list[bytes] = []  # written, not yet counted

    def __call__(self, record: bytes) -> None:
        self._write(record)
        self._held.append(record)
        if len(self._held) >= _RECORDS_PER_BATCH:
            self._count_held()

    def _count_held(self) -> None:
        self._counter.add_records(self._held)
        self._held = []

    def counts(self) -> np.ndarray:
        self._count_held()
        return self._counter.counts()


def count_records(paths: Sequence[str], vocab_size: int, label: str) -> np.ndarray:
    """The token counts of every record in `paths`, read once in order; progress on stderr every few seconds."""
    readers = [ArrayRecordReader(path) for path in paths]
    total = sum(reader.num_records() for reader in readers)
    counter = TokenCounter(vocab_size)
    start = last_report = time.monotonic()
    done = 0

    def report() -> None:
        elapsed = max(time.monotonic() - start, 1e-9)
        print(f"token counts: {label}: {done:,}/{total:,} examples ({done / elapsed:,.0f}/s)", file=sys.stderr,
              flush=True)

    for reader in readers:
        for chunk_start in range(0, reader.num_records(), _RECORDS_PER_BATCH):
            chunk = reader.read(chunk_start, min(chunk_start + _RECORDS_PER_BATCH, reader.num_records()))
            counter.add_records(chunk)
            done += len(chunk)
            if time.monotonic() - last_report >= _PROGRESS_SECONDS:
                report()
                last_report = time.monotonic()
        reader.close()
    report()
    return counter.counts()


def write_counts(path: str, counts: np.ndarray) -> None:
    """Writes `counts` as an int64 .npy file atomically (a temporary file, then a rename)."""
    def write(temporary: str) -> None:
        with open(temporary, "wb") as f:  # a file object: np.save would add ".npy" to the temporary's name
            np.save(f, np.asarray(counts, dtype=np.int64))

    fileio.write_atomic(path, write)


def read_counts(path: str, vocab_size: int) -> np.ndarray:
    """A counts file, checked: int64 [vocab_size], none negative."""
    fix = f"delete it and it is counted again ({COMMAND})"
    try:
        counts = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a token counts file ({error}); {fix}") from None
    if counts.dtype != np.int64 or counts.shape != (vocab_size,) or (counts.size and counts.min() < 0):
        raise InputError(f"{path}: expected {vocab_size} non-negative int64 counts (the vocab size of the dataset), "
                         f"got {counts.dtype} {counts.shape}; {fix}")
    return counts


def load_or_count(data_dir: str, *, max_seq_length: int, train_paths: Sequence[str], vocab_size: int) -> np.ndarray:
    """The token counts of `data_dir`'s train examples of this length: read from its `token_counts.seq_L.npy`, or,
    for a directory built before that file existed, counted from `train_paths` and written there."""
    path = token_counts_path(data_dir, max_seq_length)
    if os.path.exists(path):
        return read_counts(path, vocab_size)
    print(f"token counts: {path} does not exist (built before token counts): counting the train split once",
          file=sys.stderr, flush=True)
    counts = count_records(train_paths, vocab_size, label=f"seq_{max_seq_length} train")
    try:
        write_counts(path, counts)
    except OSError as error:
        raise InputError(
            f"cannot write {path} ({error.strerror or error}): frequency-smoothed masking needs the train split's "
            f"token counts, counted once. Count them where {data_dir} is writable (`{COMMAND} {data_dir} "
            f"--max_seq_length {max_seq_length}`), or anywhere with `--output FILE` and copy FILE to {path}"
        ) from None
    return counts
