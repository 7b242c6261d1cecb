"""Sentence-pair (NSP) examples from tokenized documents, as google-research/bert builds them.

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
import dataclasses
import functools
import hashlib
import itertools
import random
from typing import Generic, Iterator, NamedTuple, Protocol, Sequence, TypeVar

import numpy as np

from bert_jax.data.records import PairExample

# What `create_pairs_from_document` counts (see its docstring).
PAIR_COUNTERS = ("examples", "random_next", "random_next_forced", "random_next_impossible",
                 "segments_dropped_no_random_document", "short_target", "truncated_examples", "truncated_tokens")
# Room for [CLS], [SEP], [SEP].
NUM_SPECIAL_TOKENS = 3
MIN_MAX_SEQ_LENGTH = NUM_SPECIAL_TOKENS + 2  # A and B need at least one token each


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizedDocument:
    """One document: its sentences' token ids concatenated, and where each sentence ends.

    One flat array instead of a list of arrays keeps a document at ~2-4 bytes per token plus a few per sentence,
    so the random-next window stays small. Every sentence has at least one token.
    """

    token_ids: np.ndarray  # [num_tokens] unsigned ints, all sentences back to back
    sentence_ends: list[int]  # sentence i is token_ids[sentence_ends[i-1]:sentence_ends[i]] (start 0)

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[int]], dtype: np.dtype | type = np.uint32
                       ) -> "TokenizedDocument":
        """Builds a document from per-sentence token ids; empty sentences are not allowed (drop them first)."""
        ends: list[int] = []
        total = 0
        for sentence in sentences:
            if len(sentence) == 0:
                raise ValueError("TokenizedDocument: empty sentence; drop sentences without tokens first")
            total += len(sentence)
            ends.append(total)
        token_ids = np.fromiter(itertools.chain.from_iterable(sentences), dtype=dtype, count=total)
        return cls(token_ids=token_ids, sentence_ends=ends)

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_ends)

    @property
    def num_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    def sentence_start(self, index: int) -> int:
        return self.sentence_ends[index - 1] if index > 0 else 0

    @functools.cached_property
    def token_bytes(self) -> memoryview:
        """The token ids as raw bytes (no copy): slice `[start * itemsize:end * itemsize]` for a span's bytes."""
        return memoryview(np.ascontiguousarray(self.token_ids)).cast("B")


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

    The builder encodes records straight from these ranges (`records.PairRecordEncoder`), so no per-example
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


class _Sized(Protocol):
    @property
    def num_tokens(self) -> int: ...


ItemT = TypeVar("ItemT", bound=_Sized)


class _PoolView(Sequence[ItemT]):
    """The window minus its current item, without copying: `behind` then `ahead[1:]`."""

    def __init__(self, behind: collections.deque[ItemT], ahead: collections.deque[ItemT]) -> None:
        self._behind, self._ahead = behind, ahead

    def __len__(self) -> int:
        return len(self._behind) + len(self._ahead) - 1

    def __getitem__(self, index: int) -> ItemT:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        behind = len(self._behind)
        return self._behind[index] if index < behind else self._ahead[index - behind + 1]


class RandomNextWindow(Generic[ItemT]):
    """A centred sliding window over a document stream: the random-next pool of each document.

    Push items in stream order; each item comes back once, as `(item, pool)`, when enough items after it have
    arrived: the pool holds up to `half_documents` items before it and after it, each side capped at about
    `half_tokens` tokens (always at least one neighbour per side if one exists). Memory is thus bounded by
    `2 * half_documents + 1` documents and roughly `2 * half_tokens` tokens plus two documents, whatever the corpus
    size. The pool is only valid until the next `push`/`drain` step (it is a view of the window).
    """

    def __init__(self, half_documents: int = 500, half_tokens: int = 4_000_000) -> None:
        if half_documents < 1 or half_tokens < 1:
            raise ValueError("RandomNextWindow needs half_documents >= 1 and half_tokens >= 1")
        self.half_documents = half_documents
        self.half_tokens = half_tokens
        self._behind: collections.deque[ItemT] = collections.deque()
        self._ahead: collections.deque[ItemT] = collections.deque()  # _ahead[0] is the next item to emit
        self._behind_tokens = 0
        self._ahead_tokens = 0  # tokens of _ahead[1:]

    def push(self, item: ItemT) -> Iterator[tuple[ItemT, Sequence[ItemT]]]:
        if self._ahead:
            self._ahead_tokens += item.num_tokens
        self._ahead.append(item)
        while len(self._ahead) > 1 and (len(self._ahead) - 1 >= self.half_documents
                                        or self._ahead_tokens >= self.half_tokens):
            yield from self._emit()

    def drain(self) -> Iterator[tuple[ItemT, Sequence[ItemT]]]:
        """Emits the items still waiting (call at the end of the stream)."""
        while self._ahead:
            yield from self._emit()

    def _emit(self) -> Iterator[tuple[ItemT, Sequence[ItemT]]]:
        current = self._ahead[0]
        yield current, _PoolView(self._behind, self._ahead)
        self._ahead.popleft()
        if self._ahead:
            self._ahead_tokens -= self._ahead[0].num_tokens
        self._behind.append(current)
        self._behind_tokens += current.num_tokens
        while len(self._behind) > self.half_documents or (
                len(self._behind) > 1 and self._behind_tokens > self.half_tokens):
            self._behind_tokens -= self._behind.popleft().num_tokens
