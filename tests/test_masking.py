"""Masking: exact counting rules, statistics within binomial bounds, determinism, whole-word integrity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bert_jax.data import records
from bert_jax.data.masking import MaskingConfig, VocabInfo, _StreamDrawer, mask_batch, mask_example
from tests.data_helpers import make_vocab_tokens, random_examples

SIGMAS = 5.0  # bounds below are 5 binomial standard deviations: a false failure has probability < 1e-6


def within_binomial(successes: int, trials: int, probability: float) -> bool:
    sigma = math.sqrt(trials * probability * (1 - probability))
    return abs(successes - trials * probability) <= SIGMAS * sigma


@pytest.fixture(scope="module")
def tokens() -> list[str]:
    return make_vocab_tokens()


@pytest.fixture(scope="module")
def vocab(tokens) -> VocabInfo:
    return VocabInfo.from_tokens(tokens)


def masked_view(batch: dict[str, np.ndarray]):
    """Per masked position: row, position, shown token, original token."""
    rows, slots = np.nonzero(batch["masked_lm_weights"] > 0)
    positions = batch["masked_lm_positions"][rows, slots]
    return rows, positions, batch["input_ids"][rows, positions], batch["masked_lm_ids"][rows, slots]


def test_vocab_info_from_file(tmp_path, tokens):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    vocab = VocabInfo.from_vocab_file(str(path))
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (0, 1, 2, 3, 4)
    assert vocab.vocab_size == len(tokens)
    assert sorted(vocab.special_ids.tolist()) == [i for i, t in enumerate(tokens) if t.startswith("[")]
    assert set(vocab.replacement_ids.tolist()) == {i for i, t in enumerate(tokens) if not t.startswith("[")}
    assert vocab.is_continuation.tolist() == [t.startswith("##") for t in tokens]


@pytest.mark.parametrize(
    "kwargs", [{"max_predictions": 0}, {"max_predictions": 5, "masked_lm_prob": 1.5},
               {"max_predictions": 5, "mask_token_prob": 0.9, "random_token_prob": 0.2}],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        MaskingConfig(**kwargs)


def test_too_long_example_names_the_length(vocab, tokens):
    example = random_examples(1, 40, tokens, seed=0, min_length=40)[0]
    with pytest.raises(ValueError, match="max_seq_length=32"):
        mask_example(example, max_seq_length=32, config=MaskingConfig(5), vocab=vocab, seed=0, epoch=0, index=0)


@pytest.mark.parametrize("whole_word", [False, True])
def test_structure_and_exact_count(vocab, tokens, whole_word):
    """Budget formula exact (token level), positions sorted/distinct/maskable, ids original, padding zero."""
    seq_len, max_predictions = 64, 7  # a small cap so that both the formula and the cap are exercised
    examples = random_examples(600, seq_len, tokens, seed=1, min_length=5)
    # An [UNK], [MASK] and [unused0] inside the text are ordinary tokens to mask; [PAD]/[CLS]/[SEP] never.
    odd = np.array([vocab.cls_id, 1, 4, 5, vocab.sep_id, 10, vocab.pad_id, 11, vocab.sep_id], dtype=np.int32)
    examples.append(records.PairExample(odd, 3, 0))
    config = MaskingConfig(max_predictions=max_predictions, whole_word=whole_word)
    batch = mask_batch(examples, max_seq_length=seq_len, config=config, vocab=vocab, seed=5, epochs=0,
                       indices=np.arange(len(examples)))
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        "input_ids": ((601, seq_len), np.int32), "input_mask": ((601, seq_len), np.int32),
        "segment_ids": ((601, seq_len), np.int32), "masked_lm_positions": ((601, max_predictions), np.int32),
        "masked_lm_ids": ((601, max_predictions), np.int32), "masked_lm_weights": ((601, max_predictions), np.float32),
        "next_sentence_labels": ((601,), np.int32),
    }
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        ids = example.input_ids
        maskable = (ids != vocab.cls_id) & (ids != vocab.sep_id) & (ids != vocab.pad_id)
        budget = min(max_predictions, max(1, round(0.15 * int(maskable.sum()))))
        weights = batch["masked_lm_weights"][row]
        count = int(weights.sum())
        if whole_word:  # words that would overshoot are skipped, so fewer (even 0) is possible, as the original
            assert count <= budget
        else:
            assert count == budget
        assert weights[:count].tolist() == [1.0] * count and not weights[count:].any()
        positions = batch["masked_lm_positions"][row, :count]
        assert np.all(np.diff(positions) > 0), "positions sorted and distinct"
        assert maskable[positions].all(), "never [CLS], [SEP] or [PAD]"
        assert not batch["masked_lm_positions"][row, count:].any() and not batch["masked_lm_ids"][row, count:].any()
        np.testing.assert_array_equal(batch["masked_lm_ids"][row, :count], ids[positions])
        unmasked = np.ones(length, dtype=bool)
        unmasked[positions] = False
        np.testing.assert_array_equal(batch["input_ids"][row, :length][unmasked], ids[unmasked])
        assert not batch["input_ids"][row, length:].any() and not batch["input_mask"][row, length:].any()
        assert batch["input_mask"][row, :length].all()
        np.testing.assert_array_equal(batch["segment_ids"][row, :length], example.segment_ids)
        assert batch["next_sentence_labels"][row] == example.next_sentence_label


def test_rounding_is_half_to_even_like_the_original(vocab):
    """0.15 * 10 = 1.5 -> 2, * 30 = 4.5 -> 4, * 70 = 10.5 -> 10: Python's round, as create_pretraining_data."""
    config = MaskingConfig(max_predictions=20)
    for maskable, expected in [(10, 2), (30, 4), (50, 8), (70, 10), (3, 1), (2, 1)]:
        ids = np.array([vocab.cls_id] + [20] * (maskable - 1) + [vocab.sep_id, 21, vocab.sep_id], dtype=np.int32)
        example = records.PairExample(ids, maskable - 1, 0)
        out = mask_example(example, max_seq_length=80, config=config, vocab=vocab, seed=0, epoch=0, index=0)
        assert int(out["masked_lm_weights"].sum()) == expected == max(1, round(0.15 * maskable))


def test_positions_uniform_without_replacement(vocab):
    """Equal-length examples: every maskable position is chosen with probability budget / maskable."""
    num_examples, seq_len = 4000, 40
    ids = np.array([vocab.cls_id] + [20] * 18 + [vocab.sep_id] + [21] * 19 + [vocab.sep_id], dtype=np.int32)
    examples = [records.PairExample(ids, 18, 0)] * num_examples
    config = MaskingConfig(max_predictions=10)
    batch = mask_batch(examples, max_seq_length=seq_len + 1, config=config, vocab=vocab, seed=9, epochs=0,
                       indices=np.arange(num_examples))
    rows, positions, _, _ = masked_view(batch)
    counts = np.bincount(positions, minlength=seq_len + 1)
    maskable_positions = [p for p in range(len(ids)) if ids[p] not in (vocab.cls_id, vocab.sep_id)]
    probability = round(0.15 * 37) / 37  # 6 of 37 per sequence
    assert all(within_binomial(int(counts[p]), num_examples, probability) for p in maskable_positions)
    assert counts[[0, 19, 39]].sum() == 0


def test_80_10_10_split_and_random_tokens_uniform_over_non_special(vocab):
    """Of masked positions: [MASK] w.p. 0.8, a uniform non-special token w.p. 0.1, the original w.p. 0.1.

    Every text token is w0, so a shown token that is neither [MASK] nor w0 must be a random draw; the
    random draw can itself be w0 (w.p. 1/|non-special|), which then counts as unchanged.
    """
    num_examples, seq_len = 3000, 128
    word = vocab.replacement_ids[0]
    ids = np.array([vocab.cls_id] + [word] * 60 + [vocab.sep_id] + [word] * 65 + [vocab.sep_id], dtype=np.int32)
    examples = [records.PairExample(ids, 60, 0)] * num_examples
    config = MaskingConfig(max_predictions=20)
    batch = mask_batch(examples, max_seq_length=seq_len, config=config, vocab=vocab, seed=2, epochs=0,
                       indices=np.arange(num_examples))
    _, _, shown, original = masked_view(batch)
    assert (original == word).all()
    masked = len(shown)
    num_replacements = len(vocab.replacement_ids)
    is_mask, is_unchanged = shown == vocab.mask_id, shown == word
    is_random = ~is_mask & ~is_unchanged
    assert within_binomial(int(is_mask.sum()), masked, 0.8)
    assert within_binomial(int(is_random.sum()), masked, 0.1 * (1 - 1 / num_replacements))
    assert within_binomial(int(is_unchanged.sum()), masked, 0.1 + 0.1 / num_replacements)
    random_tokens = shown[is_random]
    assert not np.isin(random_tokens, vocab.special_ids).any(), "random replacement never a special token"
    others = np.setdiff1d(vocab.replacement_ids, [word])
    counts = np.array([np.sum(random_tokens == token) for token in others])
    assert counts.sum() == len(random_tokens) and counts.min() > 0, "every non-special token can be drawn"
    chi2 = scipy_stats.chisquare(counts)
    assert chi2.pvalue > 1e-6, f"random tokens not uniform over non-special ids: {chi2}"


@pytest.mark.parametrize("smoothing", [0.0, 0.7])
def test_deterministic_dynamic_and_static(vocab, tokens, smoothing):
    """Uniform masking, and frequency-smoothed masking (DistilBERT's 0.7) weighted by these examples' counts."""
    examples = random_examples(300, 64, tokens, seed=3, min_length=30)
    indices = np.arange(1000, 1300)

    def run(config, epoch, seed=4, order=slice(None)):
        return mask_batch(examples[order], max_seq_length=64, config=config, vocab=vocab, seed=seed, epochs=epoch,
                          indices=indices[order])

    dynamic, static = MaskingConfig(10, frequency_smoothing=smoothing), MaskingConfig(10, static=True,
                                                                                      frequency_smoothing=smoothing)
    if smoothing:
        counts = np.bincount(np.concatenate([e.input_ids for e in examples]), minlength=vocab.vocab_size)
        dynamic, static = dynamic.with_token_counts(counts), static.with_token_counts(counts)
    first = run(dynamic, 0)
    again = run(dynamic, 0)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    # A row's mask depends on (seed, epoch, index) only, not on its batch or its place in the batch.
    reversed_batch = run(dynamic, 0, order=slice(None, None, -1))
    assert all(np.array_equal(first[k], reversed_batch[k][::-1]) for k in first)
    halves = [run(dynamic, 0, order=slice(0, 100)), run(dynamic, 0, order=slice(100, None))]
    assert all(np.array_equal(first[k], np.concatenate([half[k] for half in halves])) for k in first)
    single = mask_example(examples[7], max_seq_length=64, config=dynamic, vocab=vocab, seed=4, epoch=0, index=1007)
    assert all(np.array_equal(single[k], first[k][7]) for k in first)

    def fraction_of_rows_changed(a, b):
        return np.mean(np.any(a["masked_lm_positions"] != b["masked_lm_positions"], axis=1))

    assert fraction_of_rows_changed(first, run(dynamic, 1)) > 0.95, "dynamic: a new mask each epoch"
    assert fraction_of_rows_changed(first, run(dynamic, 0, seed=5)) > 0.95, "the seed matters"
    static_0, static_3 = run(static, 0), run(static, 3)
    assert all(np.array_equal(static_0[k], static_3[k]) for k in first), "static: same mask every epoch"
    assert all(np.array_equal(static_0[k], first[k]) for k in first), "static = dynamic's epoch 0"


def reference_whole_words(ids: np.ndarray, vocab: VocabInfo, priorities: np.ndarray, budget: int,
                          token_weights: np.ndarray | None = None) -> set[int]:
    """The original's loop (create_masked_lm_predictions with do_whole_word_mask), words in priority order; with
    frequency smoothing's `token_weights`, in key order: -log(1 - first token's priority) / rarest token's weight."""

    def key(word: list[int]) -> float:
        if token_weights is None:
            return priorities[word[0]]
        return -math.log1p(-priorities[word[0]]) / max(token_weights[ids[position]] for position in word)

    words: list[list[int]] = []
    for position, token in enumerate(ids):
        if token in (vocab.cls_id, vocab.sep_id, vocab.pad_id):
            continue
        if words and vocab.is_continuation[token] and words[-1][-1] == position - 1:
            words[-1].append(position)
        else:
            words.append([position])
    chosen: set[int] = set()
    for word in sorted(words, key=key):
        if len(chosen) >= budget:
            break
        if len(chosen) + len(word) > budget:
            continue
        chosen.update(word)
    return chosen


@pytest.mark.parametrize("smoothing", [0.0, 0.7])
def test_whole_word_never_splits_a_word_and_matches_the_original_loop(vocab, tokens, smoothing):
    examples = random_examples(400, 64, tokens, seed=6, min_length=10)
    # A segment starting with a ## piece: that piece is a word of its own (words never span [SEP]).
    piece = int(np.flatnonzero(vocab.is_continuation)[0])
    examples.append(records.PairExample(np.array([2, 20, piece, 3, piece, piece, 21, 3], dtype=np.int32), 2, 0))
    config = MaskingConfig(max_predictions=9, whole_word=True, frequency_smoothing=smoothing)
    if smoothing:  # Zipf-like counts, so that words weigh very differently
        config = config.with_token_counts(1000 // np.arange(1, vocab.vocab_size + 1))
    indices = np.arange(len(examples))
    batch = mask_batch(examples, max_seq_length=64, config=config, vocab=vocab, seed=8, epochs=2, indices=indices)
    drawer = _StreamDrawer(8)
    for row, example in enumerate(examples):
        ids = example.input_ids
        count = int(batch["masked_lm_weights"][row].sum())
        chosen = set(batch["masked_lm_positions"][row, :count].tolist())
        maskable = int(np.sum((ids != vocab.cls_id) & (ids != vocab.sep_id)))
        budget = min(config.max_predictions, max(1, round(0.15 * maskable)))
        priorities = drawer.uniforms(2, row, 3 * len(ids))[: len(ids)]
        assert chosen == reference_whole_words(ids, vocab, priorities, budget, config.token_weights)
        for position in chosen:  # never split: a chosen word's pieces are all chosen, and so is its head
            if position + 1 < len(ids) and vocab.is_continuation[ids[position + 1]] and ids[position + 1] not in (2, 3):
                assert position + 1 in chosen
            if vocab.is_continuation[ids[position]] and ids[position - 1] not in (2, 3):
                assert position - 1 in chosen
    # 5 maskable -> budget 1: the two-token words {1, 2} and {4, 5} are skipped, whatever their order; {6} fits.
    last = batch["masked_lm_positions"][-1, : int(batch["masked_lm_weights"][-1].sum())].tolist()
    assert last == [6]


def test_random_replacement_is_never_the_original_token():
    """With two non-special tokens a draw of the original would happen half the time; it is re-drawn, so a random
    replacement is always the other token, and "unchanged" is exactly the configured 10%."""
    vocab = VocabInfo.from_tokens(make_vocab_tokens(num_words=2, num_pieces=0))
    word, other = vocab.replacement_ids.tolist()
    ids = np.array([vocab.cls_id] + [word] * 100 + [vocab.sep_id], dtype=np.int32)
    examples = [records.PairExample(ids, 99, 0)] * 2000
    batch = mask_batch(examples, max_seq_length=len(ids), config=MaskingConfig(max_predictions=15), vocab=vocab,
                       seed=3, epochs=0, indices=np.arange(len(examples)))
    _, _, shown, original = masked_view(batch)
    assert (original == word).all()
    masked = len(shown)
    assert within_binomial(int(np.sum(shown == other)), masked, 0.1)
    assert within_binomial(int(np.sum(shown == word)), masked, 0.1)  # not 0.1 + 0.1 / 2
    assert set(np.unique(shown).tolist()) == {vocab.mask_id, word, other}


def test_packed_examples_have_no_segments_no_labels_and_pad_with_the_pad_id(tokens):
    """A vocab whose [PAD] is not 0: positions past an example hold its id; packed sequences have segment ids 0
    and no next_sentence_labels; pairs and packed sequences do not mix in a batch."""
    reordered = ["[UNK]", "[PAD]"] + [t for t in tokens if t not in ("[UNK]", "[PAD]")]
    vocab = VocabInfo.from_tokens(reordered)
    assert vocab.pad_id == 1
    example = records.PackedExample(np.array([vocab.cls_id, 20, 21, vocab.sep_id, vocab.cls_id, 22, vocab.sep_id],
                                             dtype=np.int32))
    out = mask_example(example, max_seq_length=12, config=MaskingConfig(5, masked_lm_prob=1.0), vocab=vocab, seed=0,
                       epoch=0, index=0)
    assert "next_sentence_labels" not in out and not out["segment_ids"].any()
    assert out["input_ids"][7:].tolist() == [1] * 5 and out["input_mask"].tolist() == [1] * 7 + [0] * 5
    count = int(out["masked_lm_weights"].sum())
    assert out["masked_lm_positions"][:count].tolist() == [1, 2, 5], "every token but the markers, none of them"
    pair = records.PairExample(np.array([vocab.cls_id, 20, vocab.sep_id, 21, vocab.sep_id], dtype=np.int32), 1, 1)
    with pytest.raises(ValueError, match="mixes sentence pairs and packed sequences"):
        mask_batch([pair, example], max_seq_length=12, config=MaskingConfig(5), vocab=vocab, seed=0, epochs=0,
                   indices=[0, 1])
