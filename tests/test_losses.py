"""Losses and accuracies as sums and counts: correct values, padding ignored, additive across shards."""

import jax.numpy as jnp
import numpy as np
import torch

from bert_jax import objectives
from bert_jax.objectives import losses

PRETRAINING = objectives.create("mlm_nsp")


def _batch(seed=0, B=6, P=5, V=13):
    rng = np.random.default_rng(seed)
    weights = (rng.random((B, P)) < 0.7).astype(np.float32)
    weights[:, 0] = 1.0
    return {
        "mlm_logits": rng.normal(size=(B, P, V)).astype(np.float32),
        "nsp_logits": rng.normal(size=(B, 2)).astype(np.float32),
        "masked_lm_ids": rng.integers(0, V, size=(B, P)).astype(np.int32),
        "masked_lm_weights": weights,
        "next_sentence_labels": rng.integers(0, 2, size=(B,)).astype(np.int32),
    }


def _sums(b):
    return PRETRAINING.sums({"mlm_logits": b["mlm_logits"], "nsp_logits": b["nsp_logits"]}, b)


def _nsp_sums(logits, labels, weights=None):
    return losses.classification_sums("nsp", logits, labels, weights)


def test_values_equal_torch_cross_entropy():
    b = _batch()
    means = PRETRAINING.summarize(_sums(b))
    keep = b["masked_lm_weights"].reshape(-1) > 0
    logits = torch.tensor(b["mlm_logits"].reshape(-1, 13))[keep]
    labels = torch.tensor(b["masked_lm_ids"].reshape(-1), dtype=torch.long)[keep]
    expected_mlm = torch.nn.functional.cross_entropy(logits, labels).item()
    expected_nsp = torch.nn.functional.cross_entropy(
        torch.tensor(b["nsp_logits"]), torch.tensor(b["next_sentence_labels"], dtype=torch.long)).item()
    assert abs(float(means["mlm_loss"]) - expected_mlm) < 1e-5
    assert abs(float(means["nsp_loss"]) - expected_nsp) < 1e-5
    expected_acc = (logits.argmax(-1) == labels).float().mean().item()
    assert abs(float(means["mlm_accuracy"]) - expected_acc) < 1e-6
    assert abs(float(means["loss"]) - (expected_mlm + expected_nsp)) < 1e-5
    assert float(PRETRAINING.loss(_sums(b), PRETRAINING.denominators(b))) == float(means["loss"])


def test_padding_positions_do_not_count():
    b = _batch(1)
    changed = dict(b, mlm_logits=b["mlm_logits"].copy(), masked_lm_ids=b["masked_lm_ids"].copy())
    pad = b["masked_lm_weights"] == 0
    changed["mlm_logits"][pad] = 1e3
    changed["masked_lm_ids"][pad] = 0
    a, c = _sums(b), _sums(changed)
    for key in ("mlm_loss_sum", "mlm_correct_sum", "mlm_count"):
        assert float(a[key]) == float(c[key])


def test_sums_add_across_shards():
    b = _batch(2)
    whole = _sums(b)
    halves = [_sums({k: v[:3] for k, v in b.items()}), _sums({k: v[3:] for k, v in b.items()})]
    for key in whole:
        np.testing.assert_allclose(float(whole[key]), float(halves[0][key] + halves[1][key]), rtol=1e-6)
    # The mean of per-shard means is wrong when counts differ; sums then divide correctly.
    assert float(halves[0]["mlm_count"]) != float(halves[1]["mlm_count"])


def test_bf16_logits_are_promoted():
    b = _batch(3)
    s32 = PRETRAINING.summarize(_sums(b))
    bf = dict(b, mlm_logits=jnp.asarray(b["mlm_logits"], jnp.bfloat16), nsp_logits=jnp.asarray(b["nsp_logits"], jnp.bfloat16))
    s16 = PRETRAINING.summarize(_sums(bf))
    assert s16["mlm_loss"].dtype == jnp.float32
    assert abs(float(s16["mlm_loss"]) - float(s32["mlm_loss"])) < 0.05


def test_example_weights_mask_padded_examples():
    b = _batch(4)
    weights = np.array([1, 1, 1, 1, 0, 0], np.float32)
    masked = _nsp_sums(b["nsp_logits"], b["next_sentence_labels"], weights)
    first4 = _nsp_sums(b["nsp_logits"][:4], b["next_sentence_labels"][:4])
    assert float(masked["nsp_count"]) == 4
    np.testing.assert_allclose(float(masked["nsp_loss_sum"]), float(first4["nsp_loss_sum"]), rtol=1e-6)


def test_label_is_top_equals_argmax_and_counts_a_tie_as_correct():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(400, 50)).astype(np.float32)
    labels = rng.integers(0, 50, size=400).astype(np.int32)
    labels[:100] = logits[:100].argmax(-1)  # make sure both outcomes occur
    got = np.asarray(losses.label_is_top(jnp.asarray(logits), jnp.asarray(labels)))
    np.testing.assert_array_equal(got, (logits.argmax(-1) == labels).astype(np.float32))
    assert 0 < got.sum() < len(got)
    # Exact tie for the top logit: argmax picks the first index; the max comparison counts either label correct.
    tie = np.array([[1.0, 3.0, 3.0, 0.0]], np.float32)
    assert float(losses.label_is_top(jnp.asarray(tie), jnp.asarray([2]))[0]) == 1.0
    assert float(losses.label_is_top(jnp.asarray(tie), jnp.asarray([0]))[0]) == 0.0
