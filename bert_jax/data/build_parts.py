"""The dataset build's parallel stage: each input shard becomes its part files, in a pool of worker processes.

A worker streams the shard's documents, tokenizes them in batches (once, through the chunk cache), puts each
document in the train or eval split by a hash of its text, and hands it to the example kind, which writes the
records of every requested length; the tokens of the train records are counted as they are written. The part's
records and token counts are committed, then its stats file, the completion mark a resumed build trusts (see
`build.py` and docs/data_build.md).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import multiprocessing
import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from bert_jax import fileio
from bert_jax.data import examples, sources, token_counts, worker_pool
from bert_jax.data.build_layout import (SPLITS, BuildConfig, part_records_path, part_stats_path,
                                        part_token_counts_path)
from bert_jax.data.examples.base import TokenizedDocument
from bert_jax.data.sources import SourceStats
from bert_jax.data.tokenizers import vocabs
from bert_jax.data.tokenizers.chunk_encoder import CachedSentenceEncoder

# Tokenize documents in batches of about this many sentences / characters (one call amortises the Python overhead).
TOKENIZE_BATCH_SENTENCES = 4096
TOKENIZE_BATCH_CHARS = 4 * 2**20
# Part files are only read back sequentially by the merge, so they group records (cheaper to write and read).
PART_WRITER_OPTIONS = "group_size:1024,uncompressed"
# Lost input shards named in the error when a worker is killed; the rest are counted.
MAX_LOST_NAMED = 5


@dataclasses.dataclass(frozen=True)
class PartTask:
    """One input shard's work; picklable, sent to a worker process."""

    index: int
    shard: sources.InputShard
    config: BuildConfig
    output_dir: str


# Per process: the vocab and its chunk cache serve every shard.
_ENCODERS: dict[tuple[str, bool], tuple[vocabs.Vocab, CachedSentenceEncoder]] = {}
_PROGRESS: tuple[Any, Any] | None = None  # shared (documents, tokens) counters, set by the pool initializer


def _init_worker(progress: tuple[Any, Any] | None) -> None:
    global _PROGRESS
    _PROGRESS = progress
    # Parallelism comes from worker processes; the tokenizer's own threads would oversubscribe the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _encoder(vocab_path: str, lowercase: bool) -> tuple[vocabs.Vocab, CachedSentenceEncoder]:
    key = (vocab_path, lowercase)
    if key not in _ENCODERS:
        vocab = vocabs.load(vocab_path, lowercase=lowercase)
        tokenizer = vocab.tokenizer()
        vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        token_dtype = np.dtype("<u2" if vocab_size <= 2**16 else "<u4")  # little endian, as records store ids
        _ENCODERS[key] = (vocab, CachedSentenceEncoder(tokenizer, token_dtype))
    return _ENCODERS[key]


def _report_progress(documents: int, tokens: int) -> None:
    if _PROGRESS is not None:
        for counter, n in zip(_PROGRESS, (documents, tokens)):
            with counter.get_lock():
                counter.value += n


def is_eval_document(sentences: Sequence[str], eval_fraction: float) -> bool:
    """The document's split: a hash of its text, so the same text always lands in the same split."""
    if eval_fraction <= 0:
        return False
    text = "\n".join(sentences).encode("utf-8", "surrogatepass")
    value = int.from_bytes(hashlib.blake2b(text, digest_size=8, person=b"bert_jax_eval").digest(), "little")
    return value < eval_fraction * 2.0**64


def _document_batches(documents: Iterable[list[str]]) -> Iterator[list[list[str]]]:
    batch: list[list[str]] = []
    sentences = chars = 0
    for document in documents:
        batch.append(document)
        sentences += len(document)
        chars += sum(len(sentence) for sentence in document)
        if sentences >= TOKENIZE_BATCH_SENTENCES or chars >= TOKENIZE_BATCH_CHARS:
            yield batch
            batch, sentences, chars = [], 0, 0
    if batch:
        yield batch


class _PartBuilder:
    """Turns one shard's tokenized documents into its part files: the corpus counters and the split here, the
    examples by the configured kind; holds the part's record writers."""

    def __init__(self, task: PartTask, vocab: vocabs.Vocab, token_dtype: np.dtype) -> None:
        self.task = task
        self.unk_id = vocab.specials.unk
        self.documents: dict[str, collections.Counter[str]] = {split: collections.Counter() for split in SPLITS}
        self.dropped: collections.Counter[str] = collections.Counter()
        self.writers: dict[tuple[int, str], tuple[ArrayRecordWriter, str, str]] = {}
        for length in task.config.max_seq_lengths:
            for split in SPLITS:
                path = part_records_path(task.output_dir, task.index, length, split)
                temporary_path = fileio.temporary_path(path)
                self.writers[(length, split)] = (ArrayRecordWriter(temporary_path, PART_WRITER_OPTIONS),
                                                 temporary_path, path)
        kind = examples.example_kind(task.config.example_kind)
        record_writers = {key: writer.write for key, (writer, _, _) in self.writers.items()}
        # The train records' tokens are counted as they are written (token_counts.py): the merge sums the parts.
        self.token_counters = {length: token_counts.CountingWriter(record_writers[(length, "train")], vocab.size)
                               for length in task.config.max_seq_lengths}
        record_writers.update({(length, "train"): counter for length, counter in self.token_counters.items()})
        self.examples = kind.start_part(task.config, task.index, vocab.specials, token_dtype, record_writers)

    def add(self, index: int, sentences: list[str], token_ids: np.ndarray, sentence_lengths: np.ndarray) -> None:
        """One document: its sentences, their token ids back to back and each one's token count."""
        kept = sentence_lengths[sentence_lengths > 0]
        self.dropped["sentences_without_tokens"] += len(sentence_lengths) - len(kept)
        if not len(kept):
            self.dropped["documents_without_tokens"] += 1
            return
        # A copy, so a kind that holds documents back holds this document's tokens only, not its whole batch.
        document = TokenizedDocument(token_ids=token_ids.copy(), sentence_ends=np.cumsum(kept).tolist())
        split = "eval" if is_eval_document(sentences, self.task.config.eval_fraction) else "train"
        counters = self.documents[split]
        counters["documents"] += 1
        counters["sentences"] += len(kept)
        counters["tokens"] += document.num_tokens
        counters["unk_tokens"] += int(np.count_nonzero(document.token_ids == self.unk_id))
        counters["one_sentence_documents"] += len(kept) == 1
        counters["longest_document_tokens"] = max(counters["longest_document_tokens"], document.num_tokens)
        counters["longest_sentence_tokens"] = max(counters["longest_sentence_tokens"], int(kept.max()))
        self.examples.add(index, split, document, kept)

    def finish(self) -> dict[str, Any]:
        counts = self.examples.finish()
        for writer, temporary_path, path in self.writers.values():
            writer.close()
            fileio.commit(temporary_path, path)
        for length, counter in self.token_counters.items():
            token_counts.write_counts(part_token_counts_path(self.task.output_dir, self.task.index, length),
                                      counter.counts())
        return {
            "shard_index": self.task.index,
            "shard_name": self.task.shard.name,
            "documents": {split: {**dict(self.documents[split]), **counts.documents.get(split, {})}
                          for split in SPLITS},
            "dropped": dict(self.dropped),
            "per_length": counts.per_length,
        }


def build_part(task: PartTask) -> dict[str, Any]:
    """Builds one input shard's part files and returns (and persists) its statistics."""
    config = task.config
    vocab, encoder = _encoder(config.vocab, config.lowercase)
    os.makedirs(os.path.dirname(part_records_path(task.output_dir, task.index, 0, "train")), exist_ok=True)
    builder = _PartBuilder(task, vocab, encoder.token_dtype)
    source_stats = SourceStats()
    document_index = 0
    for batch in _document_batches(task.shard.documents(source_stats)):
        token_ids, sentence_lengths = encoder.encode([text for document in batch
                                                      for text in vocab.sentence_texts(document)])
        sentence_ends = np.cumsum(sentence_lengths).tolist()
        sentence = token = 0
        for document in batch:
            end = sentence + len(document)
            end_token = sentence_ends[end - 1] if end else 0
            builder.add(document_index, document, token_ids[token:end_token], sentence_lengths[sentence:end])
            sentence, token = end, end_token
            document_index += 1
        _report_progress(len(batch), len(token_ids))
    stats = builder.finish()
    stats["source"] = source_stats.to_dict()
    stats["source_notes"] = {name: list(notes) for name, notes in sorted(source_stats.notes.items())}
    fileio.write_json(part_stats_path(task.output_dir, task.index), stats, indent=1, sort_keys=True)
    return stats


class _Progress:
    """Prints documents/s, tokens/s, shards done and an ETA to stderr every few seconds."""

    def __init__(self, total_shards: int, counters: tuple[Any, Any], interval: float = 5.0) -> None:
        self.total_shards, self.counters, self.interval = total_shards, counters, interval
        self.done_shards = 0
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.print()

    def shard_done(self) -> None:
        self.done_shards += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.print()

    def print(self) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        documents, tokens = (counter.value for counter in self.counters)
        if self.done_shards:
            eta = f"{elapsed * (self.total_shards - self.done_shards) / self.done_shards:.0f}s"
        else:
            eta = "?"
        print(f"build: shards {self.done_shards}/{self.total_shards} | {documents:,} documents "
              f"({documents / elapsed:,.0f}/s) | {tokens:,} tokens ({tokens / elapsed:,.0f}/s) | "
              f"elapsed {elapsed:.0f}s | ETA {eta}", file=sys.stderr, flush=True)


def _lost_message(lost: list[PartTask]) -> str:
    """What a killed worker lost and what to do (the command prints it as its one-line error and exits 1)."""
    named = ", ".join(f"{task.index} ({task.shard.name})" for task in lost[:MAX_LOST_NAMED])
    named += f" and {len(lost) - MAX_LOST_NAMED:,} more" if len(lost) > MAX_LOST_NAMED else ""
    return (f"a build worker process was killed (by a signal, without a Python error) while input shard"
            f"{'s' if len(lost) != 1 else ''} {named or '(none recorded)'} {'were' if len(lost) != 1 else 'was'} "
            f"being built; that work is lost, every finished shard is kept. Rerun the same command to resume. The "
            f"kernel's out-of-memory killer does this when memory runs out (see `dmesg`): if so, rerun with fewer "
            f"--workers")


def run_parts(tasks: list[PartTask], workers: int) -> list[dict[str, Any]]:
    """Builds the parts of `tasks` (in this process when `workers` is 1) and returns their stats as they finish."""
    if not tasks:
        return []
    context = multiprocessing.get_context("spawn")
    progress_counters = (context.Value("q", 0), context.Value("q", 0))
    results: list[dict[str, Any]] = []
    with _Progress(len(tasks), progress_counters) as progress:
        if workers <= 1:
            saved_parallelism = os.environ.get("TOKENIZERS_PARALLELISM")
            _init_worker(progress_counters)
            try:
                for task in tasks:
                    results.append(build_part(task))
                    progress.shard_done()
            finally:  # leave the calling process as it was (and free the chunk cache)
                _init_worker(None)
                _ENCODERS.clear()
                if saved_parallelism is None:
                    os.environ.pop("TOKENIZERS_PARALLELISM", None)
                else:
                    os.environ["TOKENIZERS_PARALLELISM"] = saved_parallelism
        else:
            try:
                for result in worker_pool.imap_unordered(build_part, tasks, workers, context=context,
                                                         initializer=_init_worker, initargs=(progress_counters,)):
                    results.append(result)
                    progress.shard_done()
            except worker_pool.WorkerLostError as error:
                lost = [tasks[position] for position in error.positions]
                raise worker_pool.WorkerLostError(error.positions, _lost_message(lost)) from None
    return results
