"""CLI: the offline dataset build — corpus -> tokenized documents -> sentence-pair examples -> ArrayRecord shards.

    python -m bert_jax.data.build --input 'corpus/*.txt' --vocab vocab/vocab.txt --output data/built \\
        --max_seq_length 128,512 --workers 8

How it works (design notes with the reasons in docs/data_build.md):

1. `sources.list_input_shards` splits the input into shards (files, TFDS record ranges). Each shard is one task
   for a pool of worker processes (spawn): it streams the shard's documents, tokenizes each document once
   (through a cache of space-separated chunks, `CachedSentenceEncoder`, exactly equal to the tokenizer), puts it
   in the train or eval split by a hash of its text, and builds the pairs of every requested length and every dupe
   copy from that one tokenization. Random-next partners come from a bounded window of neighbouring documents of
   the same shard and split (`pairs.RandomNextWindow`), so a worker's memory does not grow with the corpus.
2. A task writes its examples to `OUT/.parts/NNNNN/seq_L.SPLIT.array_record` and then, as its completion mark,
   `OUT/.parts/NNNNN.stats.json` (counts per length and split). Every file is written under a temporary name,
   fsynced and renamed, so a killed build leaves either a finished file or nothing usable.
3. The output shards `OUT/seq_L/SPLIT-JJJJJ-of-MMMMM.array_record` are contiguous, equal slices of the examples of
   all parts in shard order, copied from the parts. Then `stats.json` is written and the part record files are
   deleted (the part stats stay, so a later resume knows every count without re-reading anything).

Running the same command again resumes: finished parts are skipped, existing output shards are kept, and a missing
output shard whose part records are gone has exactly those parts rebuilt. Every random draw is a function of
(seed, length, dupe, shard, document), so the result is byte-identical to a clean build with any --workers.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import glob
import hashlib
import json
import math
import multiprocessing
import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from bert_jax import fileio
from bert_jax.data import records, sources, vocab
from bert_jax.data.chunk_encoder import CachedSentenceEncoder
from bert_jax.data.pairs import (PAIR_COUNTERS, RandomNextWindow, TokenizedDocument, document_rng,
                                 pair_spans_from_document)
from bert_jax.data.sources import InputError, SourceStats

SPLITS = ("train", "eval")
BUILD_CONFIG = "build_config.json"
STATS = "stats.json"
PARTS_DIR = ".parts"
# Output shards of about this size by default: big enough to keep file counts low, small enough to spread over hosts.
TARGET_SHARD_BYTES = 256 * 2**20
# ...and at most this many records: an ArrayRecord writer (and reader) with group_size:1 keeps ~100 bytes of chunk
# index per record in RAM (measured), so this caps the merge's memory at ~26 MB whatever the corpus size.
MAX_RECORDS_PER_SHARD = 2**18
# Tokenize documents in batches of about this many sentences / characters (one call amortises the Python overhead).
TOKENIZE_BATCH_SENTENCES = 4096
TOKENIZE_BATCH_CHARS = 4 * 2**20
# Located notes per problem kind kept in stats.json.
MAX_NOTES = 5
# Output shards: one record per chunk for fast random access (the layout contract). Uncompressed: the records are
# short token-id strings that zstd does not shrink (measured: files 7% larger with zstd, writes 2.7x slower).
OUTPUT_WRITER_OPTIONS = "group_size:1,uncompressed"
# Part files are only read back sequentially by the merge, so they group records (cheaper to write and read).
PART_WRITER_OPTIONS = "group_size:1024,uncompressed"
# A temporary file: a leftover of an interrupted build, removed when the build starts again.


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What was asked; stored in OUT/build_config.json and compared when a build resumes."""

    inputs: tuple[str, ...]
    vocab: str
    lowercase: bool
    max_seq_lengths: tuple[int, ...]
    dupe_factor: int = 5
    short_seq_prob: float = 0.1
    seed: int = 12345
    eval_fraction: float = 0.01
    text_field: str = "text"
    input_format: str = "auto"
    tfds_data_dir: str | None = None
    tfds_records_per_shard: int = 100_000
    num_output_shards: int = 0  # train shards per length; 0 = about TARGET_SHARD_BYTES each
    random_next_window_documents: int = 1000  # both sides together
    random_next_window_tokens: int = 8_000_000  # both sides together

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "inputs": list(self.inputs),
                "max_seq_lengths": list(self.max_seq_lengths)}


@dataclasses.dataclass(frozen=True)
class PartTask:
    """One input shard's work; picklable, sent to a worker process."""

    index: int
    shard: sources.InputShard
    config: BuildConfig
    output_dir: str


@dataclasses.dataclass
class BuildReport:
    """What a `build` call did (the tests check that a resume redoes only what is missing)."""

    output_dir: str
    parts_built: list[int]
    outputs_written: list[str]
    stats: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# Files


def _part_stats_path(output_dir: str, index: int) -> str:
    return os.path.join(output_dir, PARTS_DIR, f"{index:05d}.stats.json")


def _part_records_path(output_dir: str, index: int, length: int, split: str) -> str:
    return os.path.join(output_dir, PARTS_DIR, f"{index:05d}", f"seq_{length}.{split}.array_record")


def output_shard_path(output_dir: str, length: int, split: str, shard: int, num_shards: int) -> str:
    return os.path.join(output_dir, f"seq_{length}", f"{split}-{shard:05d}-of-{num_shards:05d}.array_record")


def _remove_temporaries(output_dir: str) -> None:
    for directory, _, names in os.walk(output_dir):
        for name in names:
            if fileio.is_temporary(name):
                os.remove(os.path.join(directory, name))


# ---------------------------------------------------------------------------------------------------------------
# Worker side: one input shard -> part files


_ENCODERS: dict[tuple[str, bool], "CachedSentenceEncoder"] = {}  # per process: the chunk cache serves every shard
_PROGRESS: tuple[Any, Any] | None = None  # shared (documents, tokens) counters, set by the pool initializer


def _init_worker(progress: tuple[Any, Any] | None) -> None:
    global _PROGRESS
    _PROGRESS = progress
    # Parallelism comes from worker processes; the tokenizer's own threads would oversubscribe the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _encoder(vocab_file: str, lowercase: bool) -> "CachedSentenceEncoder":
    key = (vocab_file, lowercase)
    if key not in _ENCODERS:
        tokenizer = vocab.load_tokenizer(vocab_file, lowercase=lowercase)
        vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        token_dtype = np.dtype("<u2" if vocab_size <= 2**16 else "<u4")  # little endian, as records store ids
        _ENCODERS[key] = CachedSentenceEncoder(tokenizer, token_dtype)
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
    """Turns one shard's documents into examples; holds the per-split windows, writers and counters."""

    def __init__(self, task: PartTask, unk_id: int, cls_id: int, sep_id: int, token_dtype: np.dtype) -> None:
        self.task = task
        self.config = task.config
        self.unk_id, self.cls_id, self.sep_id = unk_id, cls_id, sep_id
        self.token_dtype = token_dtype
        half_documents = max(1, self.config.random_next_window_documents // 2)
        half_tokens = max(1, self.config.random_next_window_tokens // 2)
        self.windows = {split: RandomNextWindow(half_documents, half_tokens) for split in SPLITS}
        self.window_indices: dict[str, collections.deque[int]] = {split: collections.deque() for split in SPLITS}
        self.documents: dict[str, collections.Counter[str]] = {split: collections.Counter() for split in SPLITS}
        self.dropped: collections.Counter[str] = collections.Counter()
        self.examples = {(length, split): collections.Counter() for length in self.config.max_seq_lengths
                         for split in SPLITS}
        # Plain lists: one `+= 1` per example is cheaper on a list than on a NumPy array.
        self.histograms = {(length, split): [0] * (length + 1)
                           for length in self.config.max_seq_lengths for split in SPLITS}
        self.record_encoder = records.PairRecordEncoder(cls_id, sep_id, token_dtype)
        self.overlong_sentences = collections.Counter()
        self.writers: dict[tuple[int, str], tuple[ArrayRecordWriter, str, str]] = {}
        for length in self.config.max_seq_lengths:
            for split in SPLITS:
                path = _part_records_path(task.output_dir, task.index, length, split)
                temporary_path = fileio.temporary_path(path)
                self.writers[(length, split)] = (ArrayRecordWriter(temporary_path, PART_WRITER_OPTIONS),
                                                 temporary_path, path)

    def add(self, index: int, sentences: list[str], token_ids: np.ndarray, sentence_lengths: np.ndarray) -> None:
        """One document: its sentences, their token ids back to back and each one's token count."""
        kept = sentence_lengths[sentence_lengths > 0]
        self.dropped["sentences_without_tokens"] += len(sentence_lengths) - len(kept)
        if not len(kept):
            self.dropped["documents_without_tokens"] += 1
            return
        # A copy, so the window holds this document's tokens only, not its whole tokenization batch.
        document = TokenizedDocument(token_ids=token_ids.copy(), sentence_ends=np.cumsum(kept).tolist())
        split = "eval" if is_eval_document(sentences, self.config.eval_fraction) else "train"
        counters = self.documents[split]
        counters["documents"] += 1
        counters["sentences"] += len(kept)
        counters["tokens"] += document.num_tokens
        counters["unk_tokens"] += int(np.count_nonzero(document.token_ids == self.unk_id))
        counters["one_sentence_documents"] += len(kept) == 1
        counters["longest_document_tokens"] = max(counters["longest_document_tokens"], document.num_tokens)
        counters["longest_sentence_tokens"] = max(counters["longest_sentence_tokens"], int(kept.max()))
        for length in self.config.max_seq_lengths:
            self.overlong_sentences[length] += int(np.count_nonzero(kept > length - 3))
        self.window_indices[split].append(index)
        self._make_pairs(split, self.windows[split].push(document))

    def finish(self) -> dict[str, Any]:
        for split in SPLITS:
            self._make_pairs(split, self.windows[split].drain())
        for writer, temporary_path, path in self.writers.values():
            writer.close()
            fileio.commit(temporary_path, path)
        return self._stats()

    def _make_pairs(self, split: str, ready: Iterator[tuple[TokenizedDocument, Sequence[TokenizedDocument]]]
                    ) -> None:
        config = self.config
        encode = self.record_encoder.encode
        itemsize = self.token_dtype.itemsize
        for document, pool in ready:
            index = self.window_indices[split].popleft()
            if not pool:  # the only document of its shard and split: no random next possible
                self.documents[split]["documents_without_random_next_pool"] += 1
            first_bytes = document.token_bytes
            for length in config.max_seq_lengths:
                counters = self.examples[(length, split)]
                histogram = self.histograms[(length, split)]
                write = self.writers[(length, split)][0].write
                record_bytes = 0
                for dupe in range(config.dupe_factor):
                    rng = document_rng(config.seed, length, dupe, self.task.index, index)
                    # Records straight from token ranges: no per-example array (the build's hot loop).
                    for second, a_start, a_end, b_start, b_end, label in pair_spans_from_document(
                            document, pool, max_seq_length=length, short_seq_prob=config.short_seq_prob, rng=rng,
                            counters=counters):
                        record = encode(first_bytes[a_start * itemsize:a_end * itemsize],
                                        second.token_bytes[b_start * itemsize:b_end * itemsize], label)
                        record_bytes += len(record)
                        histogram[a_end - a_start + b_end - b_start + 3] += 1
                        write(record)
                counters["record_bytes"] += record_bytes

    def _stats(self) -> dict[str, Any]:
        per_length = {}
        for length in self.config.max_seq_lengths:
            per_length[str(length)] = {
                "overlong_sentences": self.overlong_sentences[length],
                **{split: {**dict(self.examples[(length, split)]),
                           "length_histogram": self.histograms[(length, split)]} for split in SPLITS},
            }
        return {
            "shard_index": self.task.index,
            "shard_name": self.task.shard.name,
            "documents": {split: dict(self.documents[split]) for split in SPLITS},
            "dropped": dict(self.dropped),
            "per_length": per_length,
        }


def build_part(task: PartTask) -> dict[str, Any]:
    """Builds one input shard's part files and returns (and persists) its statistics."""
    config = task.config
    encoder = _encoder(config.vocab, config.lowercase)
    tokenizer, token_dtype = encoder.tokenizer, encoder.token_dtype
    os.makedirs(os.path.dirname(_part_records_path(task.output_dir, task.index, 0, "train")), exist_ok=True)
    builder = _PartBuilder(task, unk_id=tokenizer.token_to_id(vocab.UNK), cls_id=tokenizer.token_to_id(vocab.CLS),
                           sep_id=tokenizer.token_to_id(vocab.SEP), token_dtype=token_dtype)
    source_stats = SourceStats()
    document_index = 0
    for batch in _document_batches(task.shard.documents(source_stats)):
        token_ids, sentence_lengths = encoder.encode([sentence for document in batch for sentence in document])
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
    fileio.write_json(_part_stats_path(task.output_dir, task.index), stats, indent=1, sort_keys=True)
    return stats


# ---------------------------------------------------------------------------------------------------------------
# Main side: plan, run parts, merge, stats


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


def _run_parts(tasks: list[PartTask], workers: int) -> list[dict[str, Any]]:
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
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(workers, len(tasks)), mp_context=context, initializer=_init_worker,
                initargs=(progress_counters,))
            try:
                futures = [pool.submit(build_part, task) for task in tasks]
                for future in concurrent.futures.as_completed(futures):
                    results.append(future.result())
                    progress.shard_done()
            finally:
                # On an error, do not start the queued shards (finished ones are kept for the resume).
                pool.shutdown(wait=True, cancel_futures=True)
    return results


@dataclasses.dataclass(frozen=True)
class _OutputShard:
    length: int
    split: str
    shard: int
    num_shards: int
    start: int  # global example index range [start, end) over all parts in shard order
    end: int
    path: str


def _plan_outputs(output_dir: str, config: BuildConfig, part_stats: list[dict[str, Any]]) -> list[_OutputShard]:
    outputs = []
    for length in config.max_seq_lengths:
        for split in SPLITS:
            counts = [part["per_length"][str(length)][split].get("examples", 0) for part in part_stats]
            total = sum(counts)
            total_bytes = sum(part["per_length"][str(length)][split].get("record_bytes", 0) for part in part_stats)
            if split == "train" and config.num_output_shards > 0:
                num_shards = config.num_output_shards
            else:
                num_shards = max(1, math.ceil(total_bytes / TARGET_SHARD_BYTES),
                                 math.ceil(total / MAX_RECORDS_PER_SHARD))
            for shard in range(num_shards):
                start, end = total * shard // num_shards, total * (shard + 1) // num_shards
                outputs.append(_OutputShard(length, split, shard, num_shards, start, end,
                                            output_shard_path(output_dir, length, split, shard, num_shards)))
    return outputs


def _parts_feeding(output: _OutputShard, part_stats: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """(part index, first, end) record ranges of the parts that make up `output`."""
    ranges, offset = [], 0
    for index, part in enumerate(part_stats):
        count = part["per_length"][str(output.length)][output.split].get("examples", 0)
        first, end = max(output.start - offset, 0), min(output.end - offset, count)
        if first < end:
            ranges.append((index, first, end))
        offset += count
    return ranges


def _write_output_shard(output_dir: str, output: _OutputShard, part_stats: list[dict[str, Any]]) -> None:
    os.makedirs(os.path.dirname(output.path), exist_ok=True)
    temporary_path = fileio.temporary_path(output.path)
    writer = ArrayRecordWriter(temporary_path, OUTPUT_WRITER_OPTIONS)
    for index, first, end in _parts_feeding(output, part_stats):
        reader = ArrayRecordReader(_part_records_path(output_dir, index, output.length, output.split))
        for chunk_start in range(first, end, 8192):
            for record in reader.read(chunk_start, min(chunk_start + 8192, end)):
                writer.write(record)
        reader.close()
    writer.close()
    fileio.commit(temporary_path, output.path)


def _sum_counters(dicts: Iterable[dict[str, int]], maximum_keys: tuple[str, ...] = ()) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for d in dicts:
        for key, value in d.items():
            total[key] = max(total[key], value) if key in maximum_keys else total[key] + value
    return dict(sorted(total.items()))


def summarize(config: BuildConfig, part_stats: list[dict[str, Any]],
              outputs: list[_OutputShard]) -> dict[str, Any]:
    """The dataset's stats.json: sums over parts plus rates, fractions and warnings."""
    maxima = ("longest_document_tokens", "longest_sentence_tokens")
    documents = {split: _sum_counters((p["documents"][split] for p in part_stats), maxima) for split in SPLITS}
    all_documents = _sum_counters(documents.values(), maxima)
    dropped = _sum_counters(p["dropped"] for p in part_stats)
    source = _sum_counters(p["source"] for p in part_stats)
    source_notes: dict[str, list[str]] = {}
    for part in part_stats:  # where the first few problems of each kind are (file:line: why)
        for name, notes in part.get("source_notes", {}).items():
            source_notes.setdefault(name, []).extend(notes[:MAX_NOTES - len(source_notes.get(name, []))])
    warnings = []
    per_length: dict[str, Any] = {}
    total_examples = 0
    for length in config.max_seq_lengths:
        key = str(length)
        entry: dict[str, Any] = {"overlong_sentences": sum(p["per_length"][key]["overlong_sentences"]
                                                           for p in part_stats)}
        for split in SPLITS:
            counters = {name: 0 for name in PAIR_COUNTERS + ("record_bytes",)}
            counters.update(_sum_counters({k: v for k, v in p["per_length"][key][split].items()
                                           if k != "length_histogram"} for p in part_stats))
            histogram = np.sum([p["per_length"][key][split]["length_histogram"] for p in part_stats], axis=0)
            examples = counters.get("examples", 0)
            counters["random_next_fraction"] = counters.get("random_next", 0) / examples if examples else 0.0
            # The short target is drawn once per document and dupe copy.
            calls = documents[split].get("documents", 0) * config.dupe_factor
            counters["short_target_fraction"] = counters.get("short_target", 0) / calls if calls else 0.0
            counters["mean_length"] = float(histogram @ np.arange(length + 1)) / examples if examples else 0.0
            counters["length_histogram"] = histogram.tolist()
            counters["shards"] = sum(1 for o in outputs if o.length == length and o.split == split)
            entry[split] = counters
            entry[f"{split}_examples"] = examples
            total_examples += examples
            impossible = counters.get("random_next_impossible", 0)
            if impossible:
                warnings.append(
                    f"seq_{length} {split}: {impossible:,} random-next draws had no other document in reach "
                    f"(one-document shard or split): they became actual-next pairs or were dropped "
                    f"({counters.get('segments_dropped_no_random_document', 0):,} segments); random_next_fraction "
                    f"is {counters['random_next_fraction']:.3f}. Fix: put small documents/files together into "
                    f"larger input files, or raise --eval_fraction for a small eval split.")
        per_length[key] = entry
    single_document_shards = sum(1 for p in part_stats for split in SPLITS
                                 if p["documents"][split].get("documents", 0) == 1)
    tokens = all_documents.get("tokens", 0)
    overall = {
        "input_shards": len(part_stats),
        "documents": all_documents.get("documents", 0),
        "sentences": all_documents.get("sentences", 0),
        "tokens": tokens,
        "unk_tokens": all_documents.get("unk_tokens", 0),
        "unknown_token_rate": all_documents.get("unk_tokens", 0) / tokens if tokens else 0.0,
        "one_sentence_documents": all_documents.get("one_sentence_documents", 0),
        "single_document_shard_splits": single_document_shards,
        "examples": total_examples,
    }
    if not overall["documents"]:
        warnings.append("no document with at least one token was found: the dataset is empty")
    return {"overall": overall, "documents": documents, "dropped": dropped, "source": source,
            "source_notes": source_notes, "per_length": per_length, "warnings": warnings}


def _check_config(output_dir: str, config: BuildConfig, shards: Sequence[sources.InputShard]) -> None:
    """Records what is asked, or checks that a resumed build asks the same of the same input shards."""
    path = os.path.join(output_dir, BUILD_CONFIG)
    # The shard list is part of the identity: a glob that now matches other files is another build.
    current = json.loads(json.dumps({**config.to_json(), "input_shards": [shard.name for shard in shards]}))
    if not os.path.exists(path):
        fileio.write_json(path, current, indent=1, sort_keys=True)
        return
    with open(path, encoding="utf-8") as f:
        previous = json.load(f)
    differences = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
    if differences:
        def show(value: Any) -> str:
            text = json.dumps(value)
            return text if len(text) <= 200 else text[:200] + "..."

        details = "; ".join(f"{key}: {show(previous.get(key))} there, {show(current.get(key))} now"
                            for key in differences)
        raise InputError(f"{path}: this output directory holds a build with different arguments or input files "
                         f"({details}). Re-run with the same arguments and inputs to resume it, or choose another "
                         f"--output.")


def build(config: BuildConfig, output_dir: str, workers: int = 1) -> BuildReport:
    """Builds (or resumes building) the dataset in `output_dir`; see the module docstring."""
    for length in config.max_seq_lengths:
        if length < 5:
            raise InputError(f"--max_seq_length {length} is too short: [CLS] A [SEP] B [SEP] needs at least 5")
    if not 0 <= config.eval_fraction < 1:
        raise InputError(f"--eval_fraction must be in [0, 1), got {config.eval_fraction}")
    if config.dupe_factor < 1:
        raise InputError(f"--dupe_factor must be at least 1, got {config.dupe_factor}")
    if not 0 <= config.short_seq_prob <= 1:
        raise InputError(f"--short_seq_prob must be in [0, 1], got {config.short_seq_prob}")
    vocab_tokens = vocab.read_vocab(config.vocab)  # a clear error for a bad vocab, before any work
    shards = sources.list_input_shards(
        list(config.inputs), text_field=config.text_field, input_format=config.input_format,
        tfds_data_dir=config.tfds_data_dir, tfds_records_per_shard=config.tfds_records_per_shard)
    os.makedirs(os.path.join(output_dir, PARTS_DIR), exist_ok=True)
    _check_config(output_dir, config, shards)
    _remove_temporaries(output_dir)

    def load_part(index: int) -> dict[str, Any] | None:
        try:
            with open(_part_stats_path(output_dir, index), encoding="utf-8") as f:
                stats = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return stats if stats.get("shard_name") == shards[index].name else None

    def tasks_for(indices: Iterable[int]) -> list[PartTask]:
        return [PartTask(index, shards[index], config, output_dir) for index in sorted(indices)]

    part_stats = [load_part(index) for index in range(len(shards))]
    todo = [index for index, stats in enumerate(part_stats) if stats is None]
    parts_built = list(todo)
    if todo:
        print(f"build: {len(todo)} of {len(shards)} input shards to do, {workers} workers", file=sys.stderr)
    for result in _run_parts(tasks_for(todo), workers):
        part_stats[result["shard_index"]] = result

    outputs = _plan_outputs(output_dir, config, part_stats)
    missing = [output for output in outputs if not os.path.exists(output.path)]
    # Parts whose records were already deleted after an earlier complete build must be rebuilt to refill a lost
    # output shard; only those feeding a missing shard are.
    needed = {index for output in missing for index, _, _ in _parts_feeding(output, part_stats)}
    lost = sorted(index for index in needed
                  if not all(os.path.exists(_part_records_path(output_dir, index, length, split))
                             for length in config.max_seq_lengths for split in SPLITS))
    if lost:
        print(f"build: rebuilding {len(lost)} input shards whose part files are gone, to refill "
              f"{len(missing)} missing output shards", file=sys.stderr)
        for result in _run_parts(tasks_for(lost), workers):
            part_stats[result["shard_index"]] = result
        parts_built = sorted(set(parts_built) | set(lost))
    for number, output in enumerate(missing, start=1):
        _write_output_shard(output_dir, output, part_stats)
        print(f"build: wrote {os.path.relpath(output.path, output_dir)} ({output.end - output.start:,} examples, "
              f"{number}/{len(missing)})", file=sys.stderr)

    stats = summarize(config, part_stats, outputs)
    vocab.write_vocab_dir(vocab_tokens, output_dir, lowercase=config.lowercase)
    fileio.write_json(os.path.join(output_dir, STATS), stats, indent=1, sort_keys=True)
    # The examples now live in the output shards; the part stats stay (they are small and make resumes exact).
    for index in range(len(shards)):
        part_directory = os.path.dirname(_part_records_path(output_dir, index, 0, "train"))
        for path in glob.glob(os.path.join(part_directory, "*.array_record")):
            os.remove(path)
        if os.path.isdir(part_directory):
            os.rmdir(part_directory)
    for warning in stats["warnings"]:
        print(f"build: WARNING: {warning}", file=sys.stderr)
    return BuildReport(output_dir, parts_built, [o.path for o in missing], stats)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def _parse_lengths(text: str) -> tuple[int, ...]:
    try:
        lengths = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max_seq_length takes comma-separated integers, got {text!r}") from None
    if not lengths:
        raise argparse.ArgumentTypeError("--max_seq_length needs at least one length, e.g. 128,512")
    return lengths


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.data.build",
        description="Build BERT pre-training examples (sentence pairs with NSP labels, unmasked) as ArrayRecord "
                    "shards, in parallel and resumably: re-run the same command to finish an interrupted build.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--input", action="extend", nargs="+", required=True,
                        help="text/JSONL/Parquet files, globs, directories, or tfds:NAME[/CONFIG][:VERSION][split]")
    parser.add_argument("--vocab", required=True, help="vocab.txt (a tokenizer_config.json beside it sets casing)")
    parser.add_argument("--output", required=True, help="output directory (resumed if it holds the same build)")
    parser.add_argument("--max_seq_length", type=_parse_lengths, default=(128, 512),
                        help="comma-separated sequence lengths, all built from one tokenization, e.g. 128,512")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--dupe_factor", type=int, default=5,
                        help="copies of each document, with pairings re-drawn per copy")
    parser.add_argument("--short_seq_prob", type=float, default=0.1,
                        help="probability of a random shorter target length per document")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--eval_fraction", type=float, default=0.01,
                        help="fraction of documents held out for eval (by a hash of the document text)")
    casing = parser.add_mutually_exclusive_group()
    casing.add_argument("--lowercase", dest="lowercase", action="store_true", default=None,
                        help="lowercase and strip accents (default: do_lower_case of the vocab's "
                             "tokenizer_config.json, cased if absent)")
    casing.add_argument("--cased", dest="lowercase", action="store_false", help="keep case and accents")
    parser.add_argument("--text_field", default="text", help="text field of JSONL/Parquet/TFDS records")
    parser.add_argument("--input_format", default="auto", help="input format (see bert_jax.data.sources)")
    parser.add_argument("--tfds_data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--tfds_records_per_shard", type=int, default=100_000,
                        help="TFDS records per input shard (unit of parallel work)")
    parser.add_argument("--num_output_shards", type=int, default=0,
                        help="train shards per length; 0 = automatic (about 256 MiB and at most 262,144 "
                             "examples each: a writer holds ~100 bytes of index per example in RAM)")
    parser.add_argument("--random_next_window", type=int, default=1000,
                        help="documents around each document (same input shard and split) from which random-next "
                             "segments are drawn; bounds memory")
    parser.add_argument("--random_next_window_tokens", type=int, default=8_000_000,
                        help="at most this many tokens in that window (bounds memory with huge documents)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        lowercase = vocab.is_lowercase_vocab(args.vocab) if args.lowercase is None else args.lowercase
        config = BuildConfig(
            inputs=tuple(args.input), vocab=args.vocab, lowercase=lowercase, max_seq_lengths=args.max_seq_length,
            dupe_factor=args.dupe_factor, short_seq_prob=args.short_seq_prob, seed=args.seed,
            eval_fraction=args.eval_fraction, text_field=args.text_field, input_format=args.input_format,
            tfds_data_dir=args.tfds_data_dir, tfds_records_per_shard=args.tfds_records_per_shard,
            num_output_shards=args.num_output_shards, random_next_window_documents=args.random_next_window,
            random_next_window_tokens=args.random_next_window_tokens)
        report = build(config, args.output, workers=max(1, args.workers))
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    overall = report.stats["overall"]
    print(f"build: done: {overall['documents']:,} documents, {overall['tokens']:,} tokens, "
          f"{overall['examples']:,} examples in {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
