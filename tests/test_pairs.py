"""Sentence-pair construction: equivalence with the original algorithm, NSP and short-target statistics, the
never-the-same-document rule, truncation, determinism, and the streaming random-next window."""

from __future__ import annotations

import collections
import functools
import math
import random

import numpy as np
import pytest

from bert_jax.data.examples import nsp_pairs
from bert_jax.data.examples.base import TokenizedDocument
from bert_jax.data.examples.nsp_pairs import create_pairs_from_document
from bert_jax.data.examples.random_next_window import RandomNextWindow

CLS, SEP = 101, 102
DOC_ID_STRIDE = 10_000  # document k uses token ids in [DOC_ID_STRIDE * (k + 1), DOC_ID_STRIDE * (k + 2))


def five_sigma(trials: int, p: float) -> float:
    return 5 * math.sqrt(trials * p * (1 - p))


def make_corpus(num_documents: int, rng: random.Random, *, max_sentences: int = 30, max_sentence_tokens: int = 40,
                min_sentences: int = 1) -> list[TokenizedDocument]:
    """Documents whose token ids say which document (and position) they come from."""
    corpus = []
    for k in range(num_documents):
        sentences, next_id = [], DOC_ID_STRIDE * (k + 1)
        for _ in range(rng.randint(min_sentences, max_sentences)):
            length = rng.randint(1, max_sentence_tokens)
            sentences.append(list(range(next_id, next_id + length)))
            next_id += length
        corpus.append(TokenizedDocument.from_sentences(sentences))
    return corpus


def document_of(token_id: int) -> int:
    return token_id // DOC_ID_STRIDE - 1


def reference_pairs(document: list[list[int]], pool: list[list[list[int]]], max_seq_length: int,
                    short_seq_prob: float, rng: random.Random) -> list[tuple[list[int], list[int], int]]:
    """google-research/bert's create_instances_from_document, restated on plain lists.

    Three changes, all documented ones, so that the random streams line up draw for draw: the random document
    is drawn once from `pool` (which excludes the current document) instead of retrying over the whole corpus;
    `randint` is our `uniform_int` (checked for uniformity in its own test); truncation uses the
    distribution-equal `truncation_counts` + Binomial draws (checked against the literal loop in its own test).
    """
    randint = functools.partial(nsp_pairs.uniform_int, rng)
    max_num_tokens = max_seq_length - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = randint(2, max_num_tokens)
    out, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for segment in chunk[:a_end] for t in segment]
            if len(chunk) == 1 or rng.random() < 0.5:
                label, tokens_b = 1, []
                random_document = pool[randint(0, len(pool) - 1)]
                for segment in random_document[randint(0, len(random_document) - 1):]:
                    tokens_b.extend(segment)
                    if len(tokens_b) >= target - len(tokens_a):
                        break
                i -= len(chunk) - a_end
            else:
                label, tokens_b = 0, [t for segment in chunk[a_end:] for t in segment]
            remove_a, remove_b = nsp_pairs.truncation_counts(len(tokens_a), len(tokens_b), max_num_tokens)
            front_a, front_b = nsp_pairs._binomial_half(remove_a, rng), nsp_pairs._binomial_half(remove_b, rng)
            tokens_a = tokens_a[front_a:len(tokens_a) - (remove_a - front_a)]
            tokens_b = tokens_b[front_b:len(tokens_b) - (remove_b - front_b)]
            out.append((tokens_a, tokens_b, label))
            chunk, length = [], 0
        i += 1
    return out


def as_lists(document: TokenizedDocument) -> list[list[int]]:
    ids = document.token_ids.tolist()
    return [ids[document.sentence_start(s):end] for s, end in enumerate(document.sentence_ends)]


@pytest.mark.parametrize("max_seq_length", [8, 32, 128])
def test_matches_the_original_algorithm_draw_for_draw(max_seq_length):
    corpus = make_corpus(60, random.Random(0))
    for k, document in enumerate(corpus):
        pool = corpus[:k] + corpus[k + 1:]
        got = create_pairs_from_document(document, pool, max_seq_length=max_seq_length, short_seq_prob=0.1,
                                         cls_id=CLS, sep_id=SEP, rng=random.Random(k))
        want = reference_pairs(as_lists(document), [as_lists(d) for d in pool], max_seq_length, 0.1,
                               random.Random(k))
        assert len(got) == len(want)
        for example, (tokens_a, tokens_b, label) in zip(got, want):
            assert example.input_ids.tolist() == [CLS] + tokens_a + [SEP] + tokens_b + [SEP]
            assert example.len_a == len(tokens_a)
            assert example.next_sentence_label == label


def test_truncation_counts_equal_the_original_loop():
    for max_num_tokens in range(2, 30):
        for len_a in range(1, 35):
            for len_b in range(1, 35):
                a, b = len_a, len_b
                while a + b > max_num_tokens:  # the original truncate_seq_pair, lengths only
                    if a > b:
                        a -= 1
                    else:
                        b -= 1
                assert nsp_pairs.truncation_counts(len_a, len_b, max_num_tokens) == (len_a - a, len_b - b)


def test_uniform_int_is_uniform():
    rng = random.Random(5)
    draws = 100_000
    counts = collections.Counter(nsp_pairs.uniform_int(rng, 3, 12) for _ in range(draws))
    assert set(counts) == set(range(3, 13))
    for value in range(3, 13):
        assert abs(counts[value] - draws / 10) <= five_sigma(draws, 0.1)


def test_truncation_front_back_split_is_fair():
    rng = random.Random(7)
    trials = 200_000
    fronts = nsp_pairs._binomial_half(trials, rng)
    assert abs(fronts - trials / 2) <= five_sigma(trials, 0.5)
    assert nsp_pairs._binomial_half(0, rng) == 0


def test_statistics_labels_lengths_and_the_never_same_document_rule():
    corpus = make_corpus(400, random.Random(1), max_sentence_tokens=60)
    max_seq_length = 64
    counters: collections.Counter[str] = collections.Counter()
    examples = []
    for dupe in range(3):
        for k, document in enumerate(corpus):
            pool = corpus[max(0, k - 20):k] + corpus[k + 1:k + 21]
            examples += [(k, e) for e in create_pairs_from_document(
                document, pool, max_seq_length=max_seq_length, short_seq_prob=0.1, cls_id=CLS, sep_id=SEP,
                rng=nsp_pairs.document_rng(3, dupe, k), counters=counters)]
    assert counters["examples"] == len(examples) > 5000
    assert counters["random_next"] == sum(e.next_sentence_label for _, e in examples)
    assert counters["truncated_examples"] > 0  # sentences up to 60 tokens against a 61-token budget

    # Chunks of two or more segments flip a fair coin; one-segment chunks are always random-next.
    coin_flips = counters["examples"] - counters["random_next_forced"]
    heads = counters["random_next"] - counters["random_next_forced"]
    assert abs(heads - coin_flips / 2) <= five_sigma(coin_flips, 0.5)

    for k, example in examples:
        ids = example.input_ids
        assert len(ids) <= max_seq_length
        assert ids[0] == CLS and ids[example.len_a + 1] == SEP and ids[-1] == SEP
        assert example.len_a >= 1 and len(ids) - example.len_a - 3 >= 1
        tokens_a, tokens_b = ids[1:example.len_a + 1], ids[example.len_a + 2:-1]
        assert {document_of(t) for t in tokens_a.tolist()} == {k}
        b_documents = {document_of(t) for t in tokens_b.tolist()}
        assert len(b_documents) == 1
        if example.next_sentence_label:
            assert b_documents != {k}, "a random next came from the same document"
        else:
            assert b_documents == {k}
            # Actual next: B starts (before truncation) right after A ends, so ids increase across the boundary.
            assert tokens_b[0] > tokens_a[-1]


def test_short_target_fraction_and_range():
    # One-token sentences: an actual-next example holds exactly target_seq_length tokens, so each call's first
    # example reveals the target it drew (random-next examples may end early, so they are left out).
    max_seq_length = 40
    max_num_tokens = max_seq_length - 3
    corpus = [TokenizedDocument.from_sentences([[DOC_ID_STRIDE * (k + 1) + j] for j in range(120)])
              for k in range(30)]
    calls, short = 0, 0
    targets = []
    for call in range(5000):
        k = call % len(corpus)
        first = create_pairs_from_document(corpus[k], corpus[:k] + corpus[k + 1:], max_seq_length=max_seq_length,
                                           short_seq_prob=0.1, cls_id=CLS, sep_id=SEP,
                                           rng=nsp_pairs.document_rng(11, call))[0]
        if first.next_sentence_label == 0:
            calls += 1
            target = len(first.input_ids) - 3
            assert 2 <= target <= max_num_tokens
            if target < max_num_tokens:
                short += 1
                targets.append(target)
    # A short target equals max_num_tokens with probability 1 / (max_num_tokens - 1) and is then invisible.
    p_visible = 0.1 * (1 - 1 / (max_num_tokens - 1))
    assert abs(short - calls * p_visible) <= five_sigma(calls, p_visible)
    # Uniform over [2, max_num_tokens - 1]: the lower half holds about half of the visible short targets.
    visible = range(2, max_num_tokens)
    middle = (visible[0] + visible[-1]) / 2
    p_lower = sum(t < middle for t in visible) / len(visible)
    lower = sum(t < middle for t in targets)
    assert abs(lower - len(targets) * p_lower) <= five_sigma(len(targets), p_lower)


def test_deterministic_and_seed_dependent():
    corpus = make_corpus(20, random.Random(2))

    def run(seed):
        return [e.input_ids.tolist() + [e.len_a, e.next_sentence_label]
                for k, d in enumerate(corpus)
                for e in create_pairs_from_document(d, corpus[:k] + corpus[k + 1:], max_seq_length=48,
                                                    short_seq_prob=0.1, cls_id=CLS, sep_id=SEP,
                                                    rng=nsp_pairs.document_rng(seed, 0, "shard", k))]

    assert run(5) == run(5)
    assert run(5) != run(6)
    assert nsp_pairs.document_rng(1, 2, "a").random() == nsp_pairs.document_rng(1, 2, "a").random()
    assert nsp_pairs.document_rng(1, 2, "a").random() != nsp_pairs.document_rng(1, 3, "a").random()


def test_no_random_document_is_counted_never_self_paired():
    counters: collections.Counter[str] = collections.Counter()
    document = make_corpus(1, random.Random(3), min_sentences=10)[0]
    one_sentence = TokenizedDocument.from_sentences([[5, 6, 7]])
    examples = []
    for dupe in range(20):
        for d in (document, one_sentence):
            examples += create_pairs_from_document(d, [], max_seq_length=32, short_seq_prob=0.1, cls_id=CLS,
                                                   sep_id=SEP, rng=nsp_pairs.document_rng(0, dupe), counters=counters)
    assert examples and all(e.next_sentence_label == 0 for e in examples)
    assert counters["random_next"] == 0
    assert counters["random_next_impossible"] > 0
    # The one-sentence document can only make a random-next pair: each of its 20 copies is dropped and counted.
    assert counters["segments_dropped_no_random_document"] >= 20
    with pytest.raises(ValueError, match="itself"):
        for seed in range(50):  # the check fires when the random-next branch draws the document
            create_pairs_from_document(document, [document], max_seq_length=32, short_seq_prob=0.1, cls_id=CLS,
                                       sep_id=SEP, rng=random.Random(seed))
    with pytest.raises(ValueError, match="at least 5"):
        create_pairs_from_document(document, [one_sentence], max_seq_length=4, short_seq_prob=0.1, cls_id=CLS,
                                   sep_id=SEP, rng=random.Random(0))


def test_huge_sentence_is_truncated_quickly_to_the_limit():
    huge = TokenizedDocument.from_sentences([list(range(1, 3_000_001)), [7, 8]])
    other = TokenizedDocument.from_sentences([[9] * 5])
    counters: collections.Counter[str] = collections.Counter()
    for seed in range(5):
        for example in create_pairs_from_document(huge, [other], max_seq_length=512, short_seq_prob=0.1,
                                                  cls_id=CLS, sep_id=SEP, rng=random.Random(seed),
                                                  counters=counters):
            assert len(example.input_ids) <= 512
    assert counters["truncated_tokens"] > 2_900_000


class Doc:
    def __init__(self, index: int, num_tokens: int = 10) -> None:
        self.index, self.num_tokens = index, num_tokens


@pytest.mark.parametrize("half_documents,half_tokens", [(3, 10**9), (50, 10**9), (4, 25), (2, 1)])
def test_window_pools_are_the_neighbours(half_documents, half_tokens):
    rng = random.Random(4)
    documents = [Doc(i, rng.randint(1, 12)) for i in range(40)]
    window = RandomNextWindow(half_documents=half_documents, half_tokens=half_tokens)
    emitted = []
    for document in documents:
        for item, pool in window.push(document):
            emitted.append((item.index, [p.index for p in pool]))
    for item, pool in window.drain():
        emitted.append((item.index, [p.index for p in pool]))
    assert [index for index, _ in emitted] == list(range(40))
    for index, pool in emitted:
        assert index not in pool
        assert pool == sorted(pool)
        before = [p for p in pool if p < index]
        after = [p for p in pool if p > index]
        # Contiguous neighbours on both sides, bounded in count and (except one neighbour) in tokens.
        assert before == list(range(index - len(before), index))
        assert after == list(range(index + 1, index + 1 + len(after)))
        assert len(before) <= half_documents and len(after) <= half_documents
        if index > 0:
            assert before, "a document with a predecessor gets at least one"
        if index < 39:
            assert after, "a document with a successor gets at least one"
        if len(before) > 1:
            assert sum(documents[p].num_tokens for p in before) <= half_tokens
        if half_tokens >= 10**9:  # count-bounded only: the full half-window where the stream allows
            assert len(before) == min(half_documents, index)
            assert len(after) == min(half_documents, 39 - index)


def test_one_document_stream_has_an_empty_pool():
    window = RandomNextWindow()
    assert list(window.push(Doc(0))) == []
    [(item, pool)] = list(window.drain())
    assert item.index == 0 and len(pool) == 0


@pytest.mark.parametrize("dtype,id_offset", [("<u2", 0), ("<u4", 0), ("<u4", 70_000)])
def test_records_from_spans_equal_records_of_the_examples(dtype, id_offset):
    """The builder's path (`pair_spans_from_document` + `PairRecordEncoder` on token bytes) writes exactly the
    bytes of `records.encode` on `create_pairs_from_document`'s examples, uint32 ids above 2**16 included."""
    from bert_jax.data import records

    rng = random.Random(9)
    corpus = [TokenizedDocument(token_ids=(document.token_ids % 30_000 + id_offset).astype(dtype),
                                sentence_ends=document.sentence_ends)
              for document in make_corpus(40, rng, max_sentence_tokens=50)]
    encoder = records.PairRecordEncoder(CLS, SEP, dtype)
    itemsize = np.dtype(dtype).itemsize
    labels = collections.Counter()
    for k, document in enumerate(corpus):
        pool = corpus[:k] + corpus[k + 1:]
        kwargs = dict(max_seq_length=64, short_seq_prob=0.1)
        spans = nsp_pairs.pair_spans_from_document(document, pool, rng=random.Random(k), **kwargs)
        examples = create_pairs_from_document(document, pool, cls_id=CLS, sep_id=SEP, rng=random.Random(k), **kwargs)
        assert len(spans) == len(examples) > 0
        for span, example in zip(spans, examples):
            record = encoder.encode(document.token_bytes[span.a_start * itemsize:span.a_end * itemsize],
                                    span.second.token_bytes[span.b_start * itemsize:span.b_end * itemsize],
                                    span.next_sentence_label)
            assert record == records.encode(example)
            decoded = records.decode(record)
            assert decoded.input_ids.tolist() == example.input_ids.tolist() and decoded.len_a == example.len_a
            labels[span.next_sentence_label] += 1
    assert labels[0] and labels[1]
    with pytest.raises(ValueError, match="uint16 or uint32"):
        records.PairRecordEncoder(CLS, SEP, np.int32)
    with pytest.raises(ValueError, match="do not fit"):
        records.PairRecordEncoder(70_000, SEP, "<u2")
