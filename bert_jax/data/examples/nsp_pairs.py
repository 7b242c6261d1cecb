"""The `nsp_pairs` example kind: BERT's sentence pairs with next-sentence labels, as google-research/bert builds
them, and their part of the dataset build (records, counters, stats.json entries, warnings).

`create_pairs_from_document` follows `create_instances_from_document` of the original
`create_pretraining_data.py` step by step: target length `max_seq_length - 3`, with probability `short_seq_prob` a
random target in [2, max]; sentences ("segments") accumulate until the target or the document end; a random split
point `a_end`; with probability 0.5 (always when the chunk is one segment) segment B is a random span of *another*
document and the unused segments are put back; otherwise B is the rest of the chunk; the longer side is truncated
one token at a time from a random end; the result is `[CLS] A [SEP] B [SEP]`. Masking is not done here (it is
online, `masking.py`).

Where we differ from the original, on purpose:

* The random next document is never the current one. The original retries 10 times and then takes whatever it
  drew, so in a small corpus it can pair a document with itself and label it "random". We draw from a pool that
  excludes the current document; when the pool is empty (a one-document corpus, shard or split) the random-next
  branch is impossible: a chunk of two or more segments becomes an actual-next example, a one-segment chunk is
  dropped, and both are counted (`random_next_impossible`, `segments_dropped_no_random_document`).
* The pool is not the whole corpus: the original holds every tokenized document in RAM and draws uniformly over
  all of them. We stream, so the pool is a bounded window of the neighbouring documents of the same stream
  (`RandomNextWindow`: up to `half_documents` before and after the current one, and at most `half_tokens` tokens
  on each side). Memory is independent of corpus size; the price is that random partners come from nearby
  documents of the same input shard, not from anywhere in the corpus.
* Randomness is a `random.Random` per (seed, length, dupe, shard, document) call (see `document_rng`), so results do
  not depend on worker count, scheduling, or on how many other documents came before in a single global stream.
* Truncation removes exactly the tokens the original's loop would (which side loses a token depends only on the
  lengths) and splits each side's removals between front and back with a Binomial(n, 1/2) draw, the same
  distribution as the original's per-token coin flips, in O(1) Python steps instead of O(n) (a 10M-token sentence
  would otherwise take minutes).
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import random
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from bert_jax.data import records
from bert_jax.data.build_layout import SPLITS, BuildConfig
from bert_jax.data.examples.base import PartCounts, RecordWriters, TokenizedDocument, summed_split_counters
from bert_jax.data.examples.random_next_window import RandomNextWindow
from bert_jax.data.records import PairExample, PairRecordEncoder
from bert_jax.data.tokenizers.vocabs import SpecialIds
from bert_jax.errors import InputError

# What `create_pairs_from_document` counts (see its docstring).
PAIR_COUNTERS = ("examples", "random_next", "random_next_forced", "random_next_impossible",
                 "segments_dropped_no_random_document", "short_target", "truncated_examples", "truncated_tokens")
# Room for [CLS], [SEP], [SEP].
NUM_SPECIAL_TOKENS = 3
MIN_MAX_SEQ_LENGTH = NUM_SPECIAL_TOKENS + 2  # A and B need at least one token each


class PairSpan(NamedTuple):
    """One example as token ranges: `[CLS] first.token_ids[a_start:a_end] [SEP] second.token_ids[b_start:b_end]
    [SEP]`, where `first` is the document the pairs were made from."""

    second: TokenizedDocument  # the document B comes from (the same one for an actual next)
    a_start: int
    a_end: int
    b_start: int
    b_end: int
    next_sentence_label: int  # 1 = random next, as in the original


def document_rng(seed: int, *keys: int | str) -> random.Random:
    """A `random.Random` that is a pure function of (seed, keys), independent of Python's hash randomisation."""
    digest = hashlib.blake2b(repr((int(seed),) + tuple(keys)).encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "little"))


def truncation_counts(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """Tokens the original's `truncate_seq_pair` removes from A and from B.

    Its loop removes one token at a time from the longer side, B on ties. So first the longer side shrinks alone
    until the two are (nearly) equal, then removals alternate; which side loses a token never depends on the coin.
    """
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return 0, 0
    if len_a > len_b:
        # A loses tokens while it is strictly longer; at equality B goes first, then they alternate.
        alone = min(excess, len_a - len_b)
        rest = excess - alone
        return alone + rest // 2, (rest + 1) // 2
    # B loses tokens while it is at least as long as A (ties go to B); at len_b == len_a - 1, A goes next.
    alone = min(excess, len_b - len_a + 1)
    rest = excess - alone
    return (rest + 1) // 2, alone + rest // 2


def _binomial_half(trials: int, rng: random.Random) -> int:
    """Binomial(trials, 1/2): the number of heads in `trials` fair coin flips, exactly, in O(trials / 64)."""
    return rng.getrandbits(trials).bit_count() if trials > 0 else 0


def uniform_int(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in [low, high], as `rng.randint` but ~10x cheaper (one float draw; the bias is below
    (high - low + 1) / 2**53, nil for document and sentence counts)."""
    return low + int(rng.random() * (high - low + 1))


def create_pairs_from_document(
    document: TokenizedDocument,
    random_documents: Sequence[TokenizedDocument],
    *,
    max_seq_length: int,
    short_seq_prob: float,
    cls_id: int,
    sep_id: int,
    rng: random.Random,
    counters: collections.Counter[str] | None = None,
) -> list[PairExample]:
    """All sentence-pair examples of one document for one length and one dupe copy.

    `random_documents` are the candidates for a random next segment; they must not include `document` (drawing it
    raises ValueError). `counters` (optional) receives: examples, random_next, random_next_forced (one-segment chunk),
    random_next_impossible, segments_dropped_no_random_document, short_target, truncated_examples,
    truncated_tokens. The pairs are those of `pair_spans_from_document`, materialised.
    """
    spans = pair_spans_from_document(document, random_documents, max_seq_length=max_seq_length,
                                     short_seq_prob=short_seq_prob, rng=rng, counters=counters)
    prefix = np.array([cls_id], dtype=np.int32)
    separator = np.array([sep_id], dtype=np.int32)
    return [PairExample(input_ids=np.concatenate((prefix, document.token_ids[span.a_start:span.a_end], separator,
                                                  span.second.token_ids[span.b_start:span.b_end], separator)),
                        len_a=span.a_end - span.a_start, next_sentence_label=span.next_sentence_label)
            for span in spans]


def pair_spans_from_document(
    document: TokenizedDocument,
    random_documents: Sequence[TokenizedDocument],
    *,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    counters: collections.Counter[str] | None = None,
) -> list[PairSpan]:
    """The examples of `create_pairs_from_document` as token ranges, without copying any token.

    The builder encodes records straight from these ranges (`PairRecordEncoder`), so no per-example
    arrays are made. Same arguments, random draws and counters as `create_pairs_from_document`.
    """
    if max_seq_length < MIN_MAX_SEQ_LENGTH:
        raise ValueError(f"max_seq_length must be at least {MIN_MAX_SEQ_LENGTH} ([CLS] A [SEP] B [SEP] with one "
                         f"token each), got {max_seq_length}")
    sentence_ends = document.sentence_ends
    num_sentences = len(sentence_ends)
    max_num_tokens = max_seq_length - NUM_SPECIAL_TOKENS
    random_float = rng.random
    num_random_documents = len(random_documents)
    # Counted locally and added once: this loop is the builder's hot path.
    short_target = forced_count = impossible = dropped = truncated_examples = truncated_tokens = random_next = 0

    target_seq_length = max_num_tokens
    if random_float() < short_seq_prob:
        target_seq_length = uniform_int(rng, 2, max_num_tokens)
        short_target = 1

    spans: list[PairSpan] = []
    chunk_start = 0  # first sentence of the current chunk
    chunk_token_start = 0  # its first token
    i = 0
    while i < num_sentences:
        if i == num_sentences - 1 or sentence_ends[i] - chunk_token_start >= target_seq_length:
            chunk_size = i - chunk_start + 1
            a_end = 1 + int(random_float() * (chunk_size - 1)) if chunk_size >= 2 else 1
            a_token_end = sentence_ends[chunk_start + a_end - 1]
            len_a = a_token_end - chunk_token_start

            b_source = None
            forced = chunk_size == 1
            if forced or random_float() < 0.5:
                if num_random_documents:
                    forced_count += forced
                    random_document = random_documents[int(random_float() * num_random_documents)]
                    if random_document is document:  # checked on the draw: O(1), the pool may be large
                        raise ValueError("random_documents contains the document itself; a random next must "
                                         "come from another document")
                    random_ends = random_document.sentence_ends
                    random_start = int(random_float() * len(random_ends))
                    b_start = random_ends[random_start - 1] if random_start else 0
                    # The original appends sentences from random_start until B reaches its target (at least one).
                    b_last = bisect.bisect_left(random_ends, b_start + target_seq_length - len_a, lo=random_start)
                    b_end = random_ends[min(b_last, len(random_ends) - 1)]
                    b_source, is_random_next = random_document, 1
                    # Put the unused segments back, so they start the next chunk.
                    i -= chunk_size - a_end
                else:
                    impossible += 1
                    dropped += forced
            if b_source is None and not forced:
                b_source, b_start, b_end, is_random_next = document, a_token_end, sentence_ends[i], 0

            if b_source is not None:
                a_start, len_b = chunk_token_start, b_end - b_start
                remove_a, remove_b = truncation_counts(len_a, len_b, max_num_tokens)
                if remove_a or remove_b:
                    truncated_examples += 1
                    truncated_tokens += remove_a + remove_b
                    front_a = _binomial_half(remove_a, rng)
                    front_b = _binomial_half(remove_b, rng)
                    a_start, a_token_end = a_start + front_a, a_token_end - (remove_a - front_a)
                    b_start, b_end = b_start + front_b, b_end - (remove_b - front_b)
                random_next += is_random_next
                spans.append(PairSpan(b_source, a_start, a_token_end, b_start, b_end, is_random_next))
            chunk_start = i + 1
            chunk_token_start = sentence_ends[i]
        i += 1

    if counters is not None:
        values = (len(spans), random_next, forced_count, impossible, dropped, short_target, truncated_examples,
                  truncated_tokens)
        for name, value in zip(PAIR_COUNTERS, values):
            if value:
                counters[name] += value
    return spans


# ---------------------------------------------------------------------------------------------------------------
# The kind, as the dataset build uses it.


class NspPairsPart:
    """One input shard's pairs: a random-next window per split, and per (length, split) a writer and counters."""

    def __init__(self, config: BuildConfig, shard_index: int, cls_id: int, sep_id: int, token_dtype: np.dtype,
                 writers: RecordWriters) -> None:
        self.config = config
        self.shard_index = shard_index
        self.token_dtype = token_dtype
        self.writers = writers
        half_documents = max(1, config.random_next_window_documents // 2)
        half_tokens = max(1, config.random_next_window_tokens // 2)
        self.windows = {split: RandomNextWindow(half_documents, half_tokens) for split in SPLITS}
        self.window_indices: dict[str, collections.deque[int]] = {split: collections.deque() for split in SPLITS}
        self.documents: dict[str, collections.Counter[str]] = {split: collections.Counter() for split in SPLITS}
        self.examples = {(length, split): collections.Counter() for length in config.max_seq_lengths
                         for split in SPLITS}
        # Plain lists: one `+= 1` per example is cheaper on a list than on a NumPy array.
        self.histograms = {(length, split): [0] * (length + 1)
                           for length in config.max_seq_lengths for split in SPLITS}
        self.record_encoder = PairRecordEncoder(cls_id, sep_id, token_dtype)
        self.overlong_sentences: collections.Counter[int] = collections.Counter()

    def add(self, index: int, split: str, document: TokenizedDocument, sentence_lengths: np.ndarray) -> None:
        for length in self.config.max_seq_lengths:
            self.overlong_sentences[length] += int(np.count_nonzero(sentence_lengths > length - NUM_SPECIAL_TOKENS))
        self.window_indices[split].append(index)
        self._make_pairs(split, self.windows[split].push(document))

    def finish(self) -> PartCounts:
        for split in SPLITS:
            self._make_pairs(split, self.windows[split].drain())
        per_length = {}
        for length in self.config.max_seq_lengths:
            per_length[str(length)] = {
                "overlong_sentences": self.overlong_sentences[length],
                **{split: {**dict(self.examples[(length, split)]),
                           "length_histogram": self.histograms[(length, split)]} for split in SPLITS},
            }
        return PartCounts(per_length=per_length, documents={split: dict(self.documents[split]) for split in SPLITS})

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
                write = self.writers[(length, split)]
                record_bytes = 0
                for dupe in range(config.dupe_factor):
                    rng = document_rng(config.seed, length, dupe, self.shard_index, index)
                    # Records straight from token ranges: no per-example array (the build's hot loop).
                    for second, a_start, a_end, b_start, b_end, label in pair_spans_from_document(
                            document, pool, max_seq_length=length, short_seq_prob=config.short_seq_prob, rng=rng,
                            counters=counters):
                        record = encode(first_bytes[a_start * itemsize:a_end * itemsize],
                                        second.token_bytes[b_start * itemsize:b_end * itemsize], label)
                        record_bytes += len(record)
                        histogram[a_end - a_start + b_end - b_start + NUM_SPECIAL_TOKENS] += 1
                        write(record)
                counters["record_bytes"] += record_bytes


class NspPairs:
    """The `nsp_pairs` kind: `[CLS] A [SEP] B [SEP]` records (`records.py`) with NSP labels, unmasked. With a BPE
    vocab the pair is `<s> A </s> B </s>` (BERT's layout with RoBERTa's tokens; segment ids 0 and 1)."""

    name = "nsp_pairs"
    labels = ("next_sentence_labels",)
    segments = 2

    def check(self, config: BuildConfig) -> None:
        for length in config.max_seq_lengths:
            if length < MIN_MAX_SEQ_LENGTH:
                raise InputError(f"--max_seq_length {length} is too short: [CLS] A [SEP] B [SEP] needs at least "
                                 f"{MIN_MAX_SEQ_LENGTH}")
        if config.dupe_factor < 1:
            raise InputError(f"--dupe_factor must be at least 1, got {config.dupe_factor}")
        if not 0 <= config.short_seq_prob <= 1:
            raise InputError(f"--short_seq_prob must be in [0, 1], got {config.short_seq_prob}")

    def start_part(self, config: BuildConfig, shard_index: int, specials: SpecialIds, token_dtype: np.dtype,
                   writers: RecordWriters) -> NspPairsPart:
        return NspPairsPart(config, shard_index, cls_id=specials.cls, sep_id=specials.sep, token_dtype=token_dtype,
                            writers=writers)

    decode = staticmethod(records.decode)

    def padding_example(self, specials: SpecialIds) -> PairExample:
        # [CLS] [SEP] [SEP]: nothing maskable, so no predictions; a few real positions keep attention finite.
        return PairExample(np.array([specials.cls, specials.sep, specials.sep], dtype=np.int32), 0, 0)

    def summarize(self, config: BuildConfig, part_stats: Sequence[dict[str, Any]],
                  documents: Mapping[str, Mapping[str, int]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        warnings = []
        per_length: dict[str, dict[str, Any]] = {}
        for length in config.max_seq_lengths:
            key = str(length)
            entry: dict[str, Any] = {"overlong_sentences": sum(p["per_length"][key]["overlong_sentences"]
                                                               for p in part_stats)}
            for split in SPLITS:
                counters, histogram = summed_split_counters(part_stats, key, split, PAIR_COUNTERS + ("record_bytes",))
                examples = counters.get("examples", 0)
                counters["random_next_fraction"] = counters.get("random_next", 0) / examples if examples else 0.0
                # The short target is drawn once per document and dupe copy.
                calls = documents[split].get("documents", 0) * config.dupe_factor
                counters["short_target_fraction"] = counters.get("short_target", 0) / calls if calls else 0.0
                counters["mean_length"] = float(histogram @ np.arange(length + 1)) / examples if examples else 0.0
                counters["length_histogram"] = histogram.tolist()
                entry[split] = counters
                impossible = counters.get("random_next_impossible", 0)
                if impossible:
                    warnings.append(
                        f"seq_{length} {split}: {impossible:,} random-next draws had no other document in reach "
                        f"(one-document shard or split): they became actual-next pairs or were dropped "
                        f"({counters.get('segments_dropped_no_random_document', 0):,} segments); "
                        f"random_next_fraction is {counters['random_next_fraction']:.3f}. Fix: put small "
                        f"documents/files together into larger input files, or raise --eval_fraction for a small "
                        f"eval split.")
            per_length[key] = entry
        return per_length, warnings


KIND = NspPairs()
