"""Random batches of the batch contract, for benchmarks and tests of the step (not for training)."""

from __future__ import annotations

import numpy as np


def synthetic_batch(
    batch_size: int, max_seq_length: int, max_predictions: int, vocab_size: int, seed: int = 0, *, num_special: int = 5
) -> dict[str, np.ndarray]:
    """Full-length pairs `[CLS] A [SEP] B [SEP]` with 15% of tokens (capped at `max_predictions`) to predict."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(num_special, vocab_size, size=(batch_size, max_seq_length), dtype=np.int32)
    segment_ids = np.zeros((batch_size, max_seq_length), np.int32)
    input_mask = np.ones((batch_size, max_seq_length), np.int32)
    positions = np.zeros((batch_size, max_predictions), np.int32)
    ids = np.zeros((batch_size, max_predictions), np.int32)
    weights = np.zeros((batch_size, max_predictions), np.float32)
    num_predictions = min(max_predictions, max(1, round(0.15 * (max_seq_length - 3))))
    for row in range(batch_size):
        split = int(rng.integers(2, max_seq_length - 2))
        input_ids[row, 0], input_ids[row, split], input_ids[row, -1] = 2, 3, 3
        segment_ids[row, split + 1 :] = 1
        maskable = np.setdiff1d(np.arange(1, max_seq_length - 1), [split])
        chosen = np.sort(rng.choice(maskable, num_predictions, replace=False))
        positions[row, :num_predictions] = chosen
        ids[row, :num_predictions] = input_ids[row, chosen]
        weights[row, :num_predictions] = 1.0
        input_ids[row, chosen] = 4  # [MASK]
    return {
        "input_ids": input_ids,
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "masked_lm_positions": positions,
        "masked_lm_ids": ids,
        "masked_lm_weights": weights,
        "next_sentence_labels": rng.integers(0, 2, size=(batch_size,), dtype=np.int32),
    }
