"""Less padding for fine-tuning: each batch is cut to its longest example rounded up to a bucket of tokens
(`finetune.length_bucket`), and optionally examples of similar length are batched together
(`finetune.group_by_length`, transformers' `LengthGroupedSampler`).

Cutting is exact: the positions removed are padding in every row (masked out of attention, ignored by every loss),
so a step on the cut batch computes what the step on the full one does, on fewer tokens. Each length compiles its
own step, so lengths are rounded up to a multiple of the bucket (at most max_seq_length / bucket compilations).

Grouping changes which examples share a batch: each epoch's shuffled order is cut into megabatches of up to 50
batches, each sorted by length, longest first. Batches are then no longer uniform draws, which the BERT paper's
recipe assumes, so it is off by default; it is what makes short-sentence tasks (SST-2) several times cheaper.
"""

from __future__ import annotations

import numpy as np

# transformers' LengthGroupedSampler: megabatches of at most this many batches
MEGABATCH_BATCHES = 50


def used_length(input_mask: np.ndarray) -> int:
    """One past the last position any row attends to (rows are padded on the right); at least 1."""
    used = input_mask.reshape(-1, input_mask.shape[-1]).any(axis=0)
    return int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1


def bucketed_length(input_mask: np.ndarray, bucket: int) -> int:
    """The batch's length: its used length rounded up to a multiple of `bucket`, at most the full length."""
    full = input_mask.shape[-1]
    if bucket <= 0:
        return full
    return min(full, -(-used_length(input_mask) // bucket) * bucket)


def cut(batch: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """The batch's sequence fields (those shaped like `input_ids` up to its last axis: masks, segments, token labels,
    QA offsets) cut to their first `length` positions; the other fields (labels, positions, weights) as they are."""
    tokens = batch["input_ids"]
    axis = tokens.ndim - 1
    if tokens.shape[axis] == length:
        return batch
    index = (slice(None),) * axis + (slice(0, length),)
    return {name: values[index] if values.shape[:axis + 1] == tokens.shape else values
            for name, values in batch.items()}


class CutToBucket:
    """A grain map: the batch cut to its bucketed length (`cut`, `bucketed_length`)."""

    def __init__(self, bucket: int) -> None:
        self.bucket = bucket

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return cut(batch, bucketed_length(batch["input_mask"], self.bucket))


def pad_back(predictions: dict[str, np.ndarray], names, length: int) -> dict[str, np.ndarray]:
    """Per-position predictions (`names`, sequence on axis 1) of a cut batch padded back to `length` positions: with
    the dtype's lowest value for floats (a logit never chosen) and 0 for integers, at positions that were padding."""
    out = dict(predictions)
    for name in names:
        values = out[name]
        missing = length - values.shape[1]
        if missing > 0:
            fill = np.finfo(values.dtype).min if np.issubdtype(values.dtype, np.floating) else 0
            widths = [(0, 0)] * values.ndim
            widths[1] = (0, missing)
            out[name] = np.pad(values, widths, constant_values=fill)
    return out


def example_lengths(input_mask: np.ndarray) -> np.ndarray:
    """Each example's attended positions (multiple choice: its longest choice's)."""
    lengths = input_mask.reshape(len(input_mask), -1, input_mask.shape[-1]).sum(axis=-1)
    return lengths.max(axis=1)


class LengthGroupedOrder:
    """Random access to an endless stream of row indices (grain's `MapDataset.source`): epoch e is a permutation of
    the rows drawn from (seed, e), cut into megabatches of `megabatch_size(n, batch_size)` rows, each sorted by
    length, longest first (stable), the longest example of all swapped to the front: transformers'
    `get_length_grouped_indices` for a given permutation."""

    EPOCHS = 2**20  # endless in practice; grain needs a length

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int) -> None:
        self.lengths = np.asarray(lengths)
        self.seed = seed
        self.megabatch = megabatch_size(len(self.lengths), batch_size)
        self._cached_epoch, self._cached_order = None, None  # the epoch being read, computed once

    def __len__(self) -> int:
        return len(self.lengths) * self.EPOCHS

    def __getitem__(self, position: int) -> int:
        epoch, index = divmod(int(position), len(self.lengths))
        return int(self.epoch_order(epoch)[index])

    def epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._cached_epoch:
            self._cached_epoch, self._cached_order = epoch, self._order(epoch)
        return self._cached_order

    def _order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.lengths))
        groups = [order[start:start + self.megabatch] for start in range(0, len(order), self.megabatch)]
        groups = [group[np.argsort(-self.lengths[group], kind="stable")] for group in groups]
        # transformers swaps the longest example to the very front, so a batch too long for memory fails first
        longest = int(np.argmax([self.lengths[group[0]] for group in groups]))
        groups[0][0], groups[longest][0] = groups[longest][0], groups[0][0]
        return np.concatenate(groups)


def megabatch_size(num_examples: int, batch_size: int) -> int:
    """transformers' choice: min(N // (4 B), 50) batches, at least one."""
    return max(min(num_examples // (4 * batch_size), MEGABATCH_BATCHES), 1) * batch_size
