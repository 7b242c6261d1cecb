"""Which positions of a batch are masked, given each position's priority: the lowest priorities within each
example's budget (`choose_tokens`), or whole words in priority order as the original's loop (`choose_whole_words`).

Uniform masking passes the per-position uniforms as priorities. Frequency-smoothed masking passes `race_keys`:
-log(1 - u) / weight is an exponential of rate `weight`, and taking the lowest of such keys draws positions one
after another with probability proportional to their weights among those left (an exponential race:
Efraimidis-Spirakis' u ** (1 / w) in another form), i.e. weighted sampling without replacement from the same
uniforms. Equal weights order the keys as the uniforms, so they choose what uniform masking chooses.
"""

from __future__ import annotations

import numpy as np

NOT_MASKABLE = np.inf  # priority above any uniform draw or smoothed key: such positions are never chosen


def choose_tokens(priority: np.ndarray, budget: np.ndarray, max_predictions: int) -> np.ndarray:
    """Marks the `budget` lowest-priority maskable positions of each row (a sample without replacement: uniform
    for uniform priorities, weighted for `race_keys`)."""
    batch_size, seq_len = priority.shape
    width = min(max_predictions, seq_len)
    lowest = np.argpartition(priority, width - 1, axis=1)[:, :width] if width < seq_len else np.argsort(
        priority, axis=1
    )
    lowest_priorities = np.take_along_axis(priority, lowest, axis=1)
    lowest = np.take_along_axis(lowest, np.argsort(lowest_priorities, axis=1, kind="stable"), axis=1)[:, :width]
    chosen = np.zeros((batch_size, seq_len), dtype=bool)
    rows = np.arange(batch_size)[:, None]
    chosen[rows, lowest] = np.arange(width)[None, :] < budget[:, None]
    return chosen


def race_keys(uniforms: np.ndarray, selected: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """-log(1 - u) / weight where `selected` (an exponential of rate `weight`), inf elsewhere: the lowest keys are a
    weighted sample without replacement. log1p(-u) is finite for u in [0, 1), and increasing in u."""
    keys = np.full(uniforms.shape, NOT_MASKABLE)
    keys[selected] = -np.log1p(-uniforms[selected]) / weights[selected]
    return keys


def choose_whole_words(
    priority: np.ndarray, maskable: np.ndarray, continuation: np.ndarray, budget: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Whole-word selection as the original: words in random order, a word that would overshoot is skipped.

    A word is a maskable token plus the maskable continuation tokens right after it (WordPiece's `##` pieces; BPE
    tokens without the leading-space marker `Ġ`, e.g. the `,` of `Ġword ,`); a continuation token after
    [CLS]/[SEP] (`<s>`/`</s>`) starts a word of its own, so a word never spans segments or documents (a document's
    first BPE word has no `Ġ`, and follows `<s>`; the build gives every later sentence its leading space). The
    word's priority is its first token's. With token `weights` (frequency smoothing) the order is a weighted one, a
    word weighing as much as its rarest token (its largest weight): a rare word is often a common first piece and
    rare later ones (`un ##believ ##able`), and its first token's draw is raced at that weight.
    """
    batch_size, seq_len = priority.shape
    previous_maskable = np.zeros_like(maskable)
    previous_maskable[:, 1:] = maskable[:, :-1]
    starts = maskable & ~(continuation & previous_maskable)
    word_id = np.cumsum(starts, axis=1) - 1  # meaningful on maskable positions only
    flat_word = (np.arange(batch_size)[:, None] * seq_len + np.maximum(word_id, 0))[maskable]
    word_length = np.bincount(flat_word, minlength=batch_size * seq_len).reshape(batch_size, seq_len)
    if weights is not None:
        # Row-major, a word's tokens are one run of `flat_word`: a max per run.
        run_starts = np.flatnonzero(np.diff(flat_word, prepend=-1))
        word_weight = np.zeros(batch_size * seq_len)
        word_weight[flat_word[run_starts]] = np.maximum.reduceat(weights[maskable], run_starts)
        weight_of_word = np.take_along_axis(word_weight.reshape(batch_size, seq_len), np.maximum(word_id, 0), axis=1)
        priority = race_keys(priority, starts, weight_of_word)
    order = np.argsort(np.where(starts, priority, NOT_MASKABLE), axis=1, kind="stable")
    num_words = starts.sum(axis=1)
    rows = np.arange(batch_size)
    taken = np.zeros(batch_size, dtype=np.int64)
    word_accepted = np.zeros((batch_size, seq_len), dtype=bool)
    for rank in range(int(num_words.max(initial=0))):
        start = order[:, rank]
        length = word_length[rows, np.maximum(word_id[rows, start], 0)]
        # len(masked) >= budget: stop; len(masked) + len(word) > budget: skip this word (original semantics).
        accept = (rank < num_words) & (taken < budget) & (taken + length <= budget)
        word_accepted[rows, word_id[rows, start]] |= accept
        taken += np.where(accept, length, 0)
        if not np.any((rank + 1 < num_words) & (taken < budget)):
            break
    return maskable & np.take_along_axis(word_accepted, np.maximum(word_id, 0), axis=1)
