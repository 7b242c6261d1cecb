"""Frequency-smoothed masking (DistilBERT's mlm_smoothing): smoothing 0 is today's masking byte for byte; with
smoothing, each example's budget is a weighted sample without replacement (exact laws checked by chi-square), and
the budget and the never-masked tokens are unchanged. Its determinism is tested with uniform masking's
(test_masking.py: test_deterministic_dynamic_and_static)."""

from __future__ import annotations

import hashlib
import itertools
import math

import ml_collections
import numpy as np
import pytest
from scipy import stats as scipy_stats

from bert_jax.data import records
from bert_jax.data.masking import MaskingConfig, VocabInfo, mask_batch, mask_example, num_to_predict
from bert_jax.errors import ConfigError
from tests.data_helpers import make_vocab_tokens, random_examples

SMOOTHING = 0.7  # DistilBERT's
MIN_PVALUE = 1e-6  # a chi-square test fails falsely with probability 1e-6
SIGMAS = 5.0


TOKENS = make_vocab_tokens()
VOCAB = VocabInfo.from_tokens(TOKENS)


def smoothed(max_predictions: int, counts: np.ndarray, **options) -> MaskingConfig:
    return MaskingConfig(max_predictions, frequency_smoothing=SMOOTHING, **options).with_token_counts(counts)


def weight(count: int) -> float:
    return max(1, count) ** -SMOOTHING


def chosen_ids(batch: dict[str, np.ndarray]) -> np.ndarray:
    """[B, P] original ids of the masked positions, -1 in padding slots."""
    return np.where(batch["masked_lm_weights"] > 0, batch["masked_lm_ids"], -1)


def shuffled_copies(ids: list[int], count: int) -> list[records.PackedExample]:
    """`count` packed examples `[CLS] ids... [SEP]`, the ids in a different order each (positions do not matter)."""
    rng = np.random.default_rng(0)
    return [records.PackedExample(np.array([VOCAB.cls_id, *rng.permutation(ids), VOCAB.sep_id], dtype=np.int32))
            for _ in range(count)]


# Batches of the masking before frequency smoothing existed (sha256 over the fields in name order), from the inputs
# `golden_batch` makes: smoothing 0 must reproduce them bit for bit.
GOLDEN = {
    "pairs-ww0-static0": "97f3323c80061d54e05fc8f3b51f82b2e66d998af33719218f04529754e1bdbc",
    "pairs-ww0-static1": "7a94ac7c44614ec6d60ab122ca09f508dcea379c8e806893fd307c9d6c6b0693",
    "pairs-ww1-static0": "216824140d0f3612c02d2bbe188c6450ccccf30cc96a7792546215644a9755a1",
    "pairs-ww1-static1": "7e945dd3e19dabed0bf082035237d91d45775ae8e8ef5f77255f8e5035ef1e57",
    "packed-ww0-static0": "e36d553b038975a3c083fad38a38af9c8c712e1bbf2fd49ce2ce9a664a00d9bd",
    "packed-ww0-static1": "6796964e6b26100da8b93d6ed1d19a180d448caa56a99e5732908b9220783cf8",
    "packed-ww1-static0": "08d6c15a765091e589079d46f83e289fbdb1accbc9f4e9186b7cda72495a2c11",
    "packed-ww1-static1": "5b113775bff03d9d014d43cde985c26f04f31ae609bdb8508f3f7464f61d7e82",
}


def golden_examples(kind: str):
    pairs = random_examples(500, 64, TOKENS, seed=11, min_length=5)
    return pairs if kind == "pairs" else [records.PackedExample(e.input_ids) for e in pairs]


def batch_digest(batch: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(batch):
        digest.update(name.encode())
        digest.update(batch[name].tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_smoothing_zero_is_byte_identical_to_the_masking_before_it(name):
    kind, whole_word, static = name.split("-")
    examples = golden_examples(kind)
    uniform = MaskingConfig(max_predictions=9, whole_word=whole_word == "ww1", static=static == "static1")
    counts = np.arange(VOCAB.vocab_size) ** 2  # weights attached but unused at smoothing 0
    for config in (uniform, uniform.with_token_counts(counts)):
        batch = mask_batch(examples, max_seq_length=64, config=config, vocab=VOCAB, seed=123,
                           epochs=np.arange(500) % 3, indices=np.arange(500) * 7 + 3)
        assert batch_digest(batch) == GOLDEN[name]


@pytest.mark.parametrize("whole_word", [False, True])
def test_equal_weights_choose_what_uniform_masking_chooses(whole_word):
    """Keys -log(1 - u) / w with one w for all order positions as u does: the same batches as smoothing 0."""
    examples = random_examples(300, 64, TOKENS, seed=2, min_length=5)
    common = dict(max_seq_length=64, vocab=VOCAB, seed=5, epochs=1, indices=np.arange(300))
    uniform = mask_batch(examples, config=MaskingConfig(9, whole_word=whole_word), **common)
    equal = mask_batch(examples, config=smoothed(9, np.full(VOCAB.vocab_size, 37), whole_word=whole_word), **common)
    assert batch_digest(uniform) == batch_digest(equal)


def test_budget_one_picks_a_token_in_proportion_to_its_weight():
    """9 maskable tokens -> budget 1: the masked token is token i with probability w_i / sum(w), exactly."""
    counts = np.zeros(VOCAB.vocab_size, dtype=np.int64)
    ids = list(range(10, 19))
    counts[ids] = [1, 1, 1, 50, 50, 50, 2000, 2000, 2000]  # three frequency classes
    num_examples = 20_000
    batch = mask_batch(shuffled_copies(ids, num_examples), max_seq_length=11, config=smoothed(5, counts),
                       vocab=VOCAB, seed=3, epochs=0, indices=np.arange(num_examples))
    masked = chosen_ids(batch)
    assert (np.sum(masked >= 0, axis=1) == 1).all()
    observed = np.array([np.sum(masked == token) for token in ids])
    weights = np.array([weight(counts[token]) for token in ids])
    expected = num_examples * weights / weights.sum()
    assert expected.min() > 20 and observed.sum() == num_examples
    assert scipy_stats.chisquare(observed, expected).pvalue > MIN_PVALUE
    # Per frequency class: rare tokens 1 / 50**-0.7 = 15.5x as often as the middle class (uniform: equally often).
    by_class = observed.reshape(3, 3).sum(axis=1) / num_examples
    assert by_class[0] > 0.9 and by_class[0] > 10 * by_class[1] > 10 * by_class[2]


def test_budget_two_is_successive_weighted_sampling_without_replacement():
    """12 maskable tokens -> budget 2: the pair drawn has the law of drawing one token by weight, then another by
    weight among the rest (enumerated exactly), tested per pair of frequency classes."""
    counts = np.zeros(VOCAB.vocab_size, dtype=np.int64)
    ids = list(range(10, 22))
    token_class = {token: position // 4 for position, token in enumerate(ids)}
    counts[ids] = [[1, 8, 64][token_class[token]] for token in ids]
    weights = {token: weight(counts[token]) for token in ids}
    total = sum(weights.values())
    expected_law: dict[tuple[int, int], float] = {}
    for first, second in itertools.permutations(ids, 2):
        cell = tuple(sorted((token_class[first], token_class[second])))
        probability = weights[first] / total * weights[second] / (total - weights[first])
        expected_law[cell] = expected_law.get(cell, 0.0) + probability
    num_examples = 20_000
    batch = mask_batch(shuffled_copies(ids, num_examples), max_seq_length=14, config=smoothed(5, counts),
                       vocab=VOCAB, seed=4, epochs=2, indices=np.arange(num_examples))
    masked = chosen_ids(batch)
    assert (np.sum(masked >= 0, axis=1) == 2).all(), "the budget: round(0.15 * 12) = 2"
    observed_cells = [tuple(sorted(token_class[int(t)] for t in row if t >= 0)) for row in masked]
    cells = sorted(expected_law)
    observed = np.array([observed_cells.count(cell) for cell in cells])
    expected = num_examples * np.array([expected_law[cell] for cell in cells])
    assert math.isclose(expected.sum(), num_examples) and expected.min() > 5
    assert scipy_stats.chisquare(observed, expected).pvalue > MIN_PVALUE


def test_a_word_weighs_as_much_as_its_rarest_token():
    """Whole words: `w0 ##p0` (a common head, a rare piece) among 10 common one-token words, budget 2. The word is
    masked iff it is drawn first (drawn later it would overshoot), w.p. w(rarest) / (w(rarest) + 10 w(common));
    with the first token's weight it would be 1/11."""
    head, rare_piece = 10, int(np.flatnonzero(VOCAB.is_continuation)[0])
    singles = list(range(11, 21))
    counts = np.zeros(VOCAB.vocab_size, dtype=np.int64)
    counts[[head, *singles]] = 1000
    counts[rare_piece] = 1
    ids = np.array([VOCAB.cls_id, head, rare_piece, *singles, VOCAB.sep_id], dtype=np.int32)
    num_examples = 4000
    examples = [records.PackedExample(ids)] * num_examples
    batch = mask_batch(examples, max_seq_length=len(ids), config=smoothed(5, counts, whole_word=True), vocab=VOCAB,
                       seed=6, epochs=0, indices=np.arange(num_examples))
    masked = chosen_ids(batch)
    word_masked = np.any(masked == rare_piece, axis=1)
    assert (word_masked == np.any(masked == head, axis=1)).all(), "never split"
    probability = weight(1) / (weight(1) + 10 * weight(1000))
    sigma = math.sqrt(num_examples * probability * (1 - probability))
    assert abs(word_masked.sum() - num_examples * probability) <= SIGMAS * sigma


@pytest.mark.parametrize("whole_word", [False, True])
def test_budget_unchanged_and_special_tokens_never_chosen(whole_word):
    """Zipf-like counts, and [CLS]/[SEP]/[PAD] with count 0 (the largest weight): the budget per example is the
    uniform masking's, and only maskable positions are ever chosen."""
    examples = random_examples(800, 64, TOKENS, seed=7, min_length=5)
    counts = np.zeros(VOCAB.vocab_size, dtype=np.int64)
    counts[10:] = (1e5 / np.arange(1, VOCAB.vocab_size - 9)).astype(np.int64)
    config = smoothed(9, counts, whole_word=whole_word)
    batch = mask_batch(examples, max_seq_length=64, config=config, vocab=VOCAB, seed=8, epochs=0,
                       indices=np.arange(len(examples)))
    for row, example in enumerate(examples):
        ids = example.input_ids
        maskable = (ids != VOCAB.cls_id) & (ids != VOCAB.sep_id) & (ids != VOCAB.pad_id)
        budget = int(num_to_predict(int(maskable.sum()), config))
        count = int(batch["masked_lm_weights"][row].sum())
        assert count <= budget if whole_word else count == budget
        positions = batch["masked_lm_positions"][row, :count]
        assert np.all(np.diff(positions) > 0) and maskable[positions].all()
        np.testing.assert_array_equal(batch["masked_lm_ids"][row, :count], ids[positions])
        assert not batch["input_ids"][row, len(ids):].any(), "padding stays padding"


def test_config_field_and_clear_errors():
    data = ml_collections.ConfigDict({"masked_lm_prob": 0.15, "whole_word_masking": False, "static_masking": False})
    assert MaskingConfig.from_data_config(data, 20).frequency_smoothing == 0.0  # configs without the field
    data.mlm_smoothing = 0.7
    assert MaskingConfig.from_data_config(data, 20) == MaskingConfig(20, frequency_smoothing=0.7)
    with pytest.raises(ConfigError, match="mlm_smoothing"):
        MaskingConfig(20, frequency_smoothing=-0.5)
    example = random_examples(1, 32, TOKENS, seed=0)[0]
    options = dict(max_seq_length=32, vocab=VOCAB, seed=0, epoch=0, index=0)
    with pytest.raises(ValueError, match="with_token_counts"):
        mask_example(example, config=MaskingConfig(5, frequency_smoothing=0.7), **options)
    with pytest.raises(ValueError, match="another vocab"):
        mask_example(example, config=smoothed(5, np.ones(12, dtype=np.int64)), **options)
    with pytest.raises(ValueError, match="non-negative"):
        MaskingConfig(5, frequency_smoothing=0.7).with_token_counts(np.array([1, -1]))
