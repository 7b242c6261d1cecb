"""Online masked-LM masking of pre-training examples (sentence pairs or packed sequences), pure NumPy, for any
vocabulary: every id it needs comes from the vocab's special tokens (`VocabInfo`), WordPiece or byte-level BPE.

The rules follow google-research/bert `create_masked_lm_predictions` (RoBERTa's are the same 15% / 80-10-10), with
three deliberate differences: the prediction budget counts only maskable tokens (not [CLS]/[SEP], `<s>`/`</s>`);
a random replacement is drawn from the vocabulary *minus* special tokens (the original could put `[MASK]`, `[CLS]`
or `[unused12]` there); and it differs from the original token, as the RoBERTa recipe asks (BERT's could draw the
original back, with probability 1/|non-special|: such a draw is now re-drawn among the others, see `mask_batch`).

Every random number is a pure function of (seed, epoch, example index, position): each example gets its own
Philox stream keyed by `(seed, index)` and started at a counter that encodes the epoch. So the mask of an
example does not depend on batch composition, worker processes or hosts, a resumed run re-draws the same
masks, and the mask changes every epoch (dynamic masking) unless `static=True` pins the epoch to 0.

Per example the stream is laid out as three blocks of `length` draws: a priority per position (the lowest
priorities are masked: uniform sampling without replacement), an action per position (80/10/10), and a
replacement token per position. Only the per-example stream set-up is a Python loop; the rest is vectorised
over the batch (`mask_batch`); `mask_example` is `mask_batch` on a batch of one.

Frequency smoothing (DistilBERT's `mlm_smoothing`, `frequency_smoothing` > 0): a token of training-data count c
weighs max(1, c) ** -smoothing, and each example's budget is drawn by weighted sampling without replacement from
the same priority uniforms (`mask_positions.race_keys`), so rare tokens are masked more often than uniformly.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from bert_jax.data import records
from bert_jax.data.mask_positions import NOT_MASKABLE, choose_tokens, choose_whole_words, race_keys
from bert_jax.data.tokenizers import vocabs
from bert_jax.errors import ConfigError

_UINT64_TO_UNIT = 2.0**-53  # (raw >> 11) * 2**-53 is uniform on [0, 1) with 53 random bits


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """How many and which tokens to predict, and what the model sees there."""

    max_predictions: int  # P: masked_lm_* arrays are padded to this many positions
    masked_lm_prob: float = 0.15  # fraction of maskable tokens to predict (rounded, at least 1)
    mask_token_prob: float = 0.8  # of the predicted positions: shown as [MASK]
    random_token_prob: float = 0.1  # ... shown as a random non-special token; the rest are left unchanged
    whole_word: bool = False  # choose whole words (a token and its following ## pieces, or its Ġ-less BPE tokens)
    static: bool = False  # same mask every epoch (as the original's offline masking), else dynamic
    # > 0: choose positions with probability proportional to max(1, count) ** -frequency_smoothing (DistilBERT: 0.7)
    # instead of uniformly; 0 = uniform. The counts come from `with_token_counts` (the loader reads the data dir's).
    frequency_smoothing: float = 0.0
    # [vocab size] float64 weight per token id, max(1, count) ** -frequency_smoothing; set by `with_token_counts`.
    token_weights: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_predictions < 1:
            raise ValueError(f"max_predictions must be >= 1, got {self.max_predictions}")
        for name in ("masked_lm_prob", "mask_token_prob", "random_token_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.mask_token_prob + self.random_token_prob > 1.0 + 1e-12:
            raise ValueError(
                f"mask_token_prob + random_token_prob must be <= 1 (the rest is left unchanged), got "
                f"{self.mask_token_prob} + {self.random_token_prob}"
            )
        if not (np.isfinite(self.frequency_smoothing) and self.frequency_smoothing >= 0):
            raise ConfigError(f"frequency_smoothing (data.mlm_smoothing) must be >= 0 (0 = uniform masking, "
                              f"DistilBERT uses 0.7), got {self.frequency_smoothing}")
        if self.token_weights is not None:
            weights = np.array(self.token_weights, dtype=np.float64)  # a private, read-only copy
            if weights.ndim != 1 or not np.all(np.isfinite(weights) & (weights > 0)):
                raise ValueError("token_weights must be one finite, positive weight per token id")
            weights.flags.writeable = False
            object.__setattr__(self, "token_weights", weights)

    @classmethod
    def from_data_config(cls, data_config, max_predictions: int) -> "MaskingConfig":
        """The masking a run's `config.data` asks for, at a phase's number of predictions."""
        return cls(
            max_predictions=max_predictions,
            masked_lm_prob=data_config.masked_lm_prob,
            whole_word=data_config.whole_word_masking,
            static=data_config.static_masking,
            frequency_smoothing=data_config.get("mlm_smoothing", 0.0),
        )

    def with_token_counts(self, counts: np.ndarray) -> "MaskingConfig":
        """This config with the token weights of per-id `counts` (`token_counts.py`): max(1, count) ** -smoothing."""
        counts = np.asarray(counts)
        if counts.ndim != 1 or (counts.size and counts.min() < 0):
            raise ValueError(f"token counts must be one non-negative count per token id, got shape {counts.shape}")
        weights = np.maximum(counts, 1).astype(np.float64) ** -self.frequency_smoothing
        return dataclasses.replace(self, token_weights=weights)

    @property
    def smoothed(self) -> bool:
        return self.frequency_smoothing > 0


@dataclasses.dataclass(frozen=True, eq=False)
class VocabInfo:
    """What masking needs to know about a vocabulary, WordPiece or byte-level BPE (`kind`).

    `cls_id`/`sep_id` are `[CLS]`/`[SEP]` or `<s>`/`</s>`; they and `pad_id` are never masked. Batches are padded
    with `pad_id` (`<pad>` is 1 in RoBERTa's vocab).
    """

    vocab_size: int
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    unk_id: int
    special_ids: np.ndarray  # int32 ids of every special token ([PAD], [unused0], ...; <s>, <mask>, ...)
    is_continuation: np.ndarray  # bool [vocab_size]: the token continues a word (`##...`; BPE: no leading `Ġ`)
    replacement_ids: np.ndarray  # int32 ids a random replacement is drawn from: all but special_ids
    kind: str = vocabs.WORDPIECE

    @property
    def specials(self) -> vocabs.SpecialIds:
        return vocabs.SpecialIds(pad=self.pad_id, unk=self.unk_id, cls=self.cls_id, sep=self.sep_id,
                                 mask=self.mask_id)

    @classmethod
    def from_vocab(cls, vocab: vocabs.Vocab) -> "VocabInfo":
        is_special = np.zeros(vocab.size, dtype=bool)
        is_special[list(vocab.special_token_ids)] = True
        replacement = np.flatnonzero(~is_special).astype(np.int32)
        if replacement.size == 0:
            raise ValueError("vocabulary has only special tokens: nothing to draw random replacements from")
        specials = vocab.specials
        return cls(
            vocab_size=vocab.size,
            pad_id=specials.pad,
            cls_id=specials.cls,
            sep_id=specials.sep,
            mask_id=specials.mask,
            unk_id=specials.unk,
            special_ids=np.flatnonzero(is_special).astype(np.int32),
            is_continuation=np.array([vocab.continues_word(token) for token in vocab.tokens], dtype=bool)
            & ~is_special,
            replacement_ids=replacement,
            kind=vocab.kind,
        )

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> "VocabInfo":
        """A WordPiece vocab's, from its tokens in id order."""
        return cls.from_vocab(vocabs.wordpiece_vocab(list(tokens), path="<tokens>", lowercase=False))

    @classmethod
    def from_vocab_file(cls, path: str) -> "VocabInfo":
        """From a vocab of either kind: a `vocab.txt`, a BPE `tokenizer.json`, or either's directory."""
        return cls.from_vocab(vocabs.load(path, lowercase=False))

    @classmethod
    def from_data_dir(cls, data_dir: str) -> "VocabInfo":
        """From the vocab a built dataset carries, whatever its kind."""
        return cls.from_vocab(vocabs.from_data_dir(data_dir))


def num_to_predict(num_maskable: np.ndarray | int, config: MaskingConfig) -> np.ndarray:
    """min(max_predictions, max(1, round(masked_lm_prob * maskable))), never more than there is to mask."""
    num_maskable = np.asarray(num_maskable, dtype=np.int64)
    # np.rint rounds half to even, exactly as Python's round() that the original uses.
    budget = np.minimum(config.max_predictions, np.maximum(1, np.rint(config.masked_lm_prob * num_maskable)))
    return np.minimum(budget, num_maskable).astype(np.int64)


class _StreamDrawer:
    """Draws the per-example uniform blocks from Philox keyed by (seed, index), counter at the epoch.

    Re-seating one bit generator's state is ~4x cheaper than constructing a Generator per example.
    """

    def __init__(self, seed: int) -> None:
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self._bit_generator = np.random.Philox(key=0)
        self._key = np.array([int(seed), 0], dtype=np.uint64)
        self._counter = np.zeros(4, dtype=np.uint64)
        self._empty_buffer = np.zeros(4, dtype=np.uint64)

    def uniforms(self, epoch: int, index: int, count: int) -> np.ndarray:
        if index < 0 or epoch < 0:
            raise ValueError(f"example index and epoch must be >= 0, got index={index}, epoch={epoch}")
        self._key[1] = index
        # Counter words 0-1 advance with each draw; word 2 holds the epoch, so the epochs' streams are 2**128
        # draws apart and never overlap.
        self._counter[2] = epoch
        self._bit_generator.state = {
            "bit_generator": "Philox",
            "state": {"counter": self._counter, "key": self._key},
            "buffer": self._empty_buffer,
            "buffer_pos": 4,
            "has_uint32": 0,
            "uinteger": 0,
        }
        return (self._bit_generator.random_raw(count) >> np.uint64(11)) * _UINT64_TO_UNIT


def _as_row_values(values: int | Sequence[int] | np.ndarray, batch_size: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64)
    if array.ndim == 0:
        return np.full(batch_size, int(array), dtype=np.int64)
    if array.shape != (batch_size,):
        raise ValueError(f"{name} must be a scalar or have one value per example ({batch_size}), got {array.shape}")
    return array


def mask_batch(
    examples: Sequence[records.PairExample] | Sequence[records.PackedExample],
    *,
    max_seq_length: int,
    config: MaskingConfig,
    vocab: VocabInfo,
    seed: int,
    epochs: int | Sequence[int] | np.ndarray,
    indices: Sequence[int] | np.ndarray,
) -> dict[str, np.ndarray]:
    """Masks and pads a list of examples into one batch of the pre-training batch contract (`objectives/mlm.py`, `pretraining.py`).

    `indices` are the examples' global record indices and `epochs` the epoch each was drawn in (a scalar or one
    per example); with `config.static` the epoch is ignored. Row i equals `mask_example(examples[i], ...)`.
    Sentence pairs give segment ids 0/1 and `next_sentence_labels`; packed sequences give segment ids 0 and no
    labels. Positions past an example's end hold `vocab.pad_id`.
    """
    batch_size, seq_len, max_predictions = len(examples), max_seq_length, config.max_predictions
    indices = _as_row_values(indices, batch_size, "indices")
    epochs = _as_row_values(0 if config.static else epochs, batch_size, "epochs")
    pairs = [isinstance(example, records.PairExample) for example in examples]
    if any(pairs) and not all(pairs):
        raise ValueError("mask_batch: a batch mixes sentence pairs and packed sequences")
    with_pairs = all(pairs)

    original_ids = np.full((batch_size, seq_len), vocab.pad_id, dtype=np.int32)
    segment_ids = np.zeros((batch_size, seq_len), dtype=np.int32)
    lengths = np.zeros(batch_size, dtype=np.int64)
    next_sentence_labels = np.zeros(batch_size, dtype=np.int32)
    uniforms = np.ones((3, batch_size, seq_len), dtype=np.float64)
    drawer = _StreamDrawer(seed)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        if length > seq_len:
            raise ValueError(
                f"example {int(indices[row])} has {length} tokens, more than max_seq_length={seq_len}: read the "
                f"seq_{seq_len} directory built for this length (python -m bert_jax.data.build --max_seq_length)"
            )
        original_ids[row, :length] = example.input_ids
        lengths[row] = length
        if with_pairs:
            segment_ids[row, example.len_a + 2 : length] = 1
            next_sentence_labels[row] = example.next_sentence_label
        uniforms[:, row, :length] = drawer.uniforms(int(epochs[row]), int(indices[row]), 3 * length).reshape(3, length)
    priority_u, action_u, replacement_u = uniforms

    in_sequence = np.arange(seq_len)[None, :] < lengths[:, None]
    maskable = in_sequence & (original_ids != vocab.cls_id) & (original_ids != vocab.sep_id)
    maskable &= original_ids != vocab.pad_id
    budget = num_to_predict(maskable.sum(axis=1), config)
    priority = np.where(maskable, priority_u, NOT_MASKABLE)
    weights = _position_weights(config, original_ids) if config.smoothed else None
    if config.whole_word:
        chosen = choose_whole_words(priority, maskable, vocab.is_continuation[original_ids], budget, weights)
    else:
        if weights is not None:
            priority = race_keys(priority_u, maskable, weights)
        chosen = choose_tokens(priority, budget, max_predictions)

    show_mask = chosen & (action_u < config.mask_token_prob)
    show_random = chosen & ~show_mask & (action_u < config.mask_token_prob + config.random_token_prob)
    input_ids = np.where(show_mask, vocab.mask_id, original_ids).astype(np.int32)
    random_rows, random_positions = np.nonzero(show_random)  # ~1.5% of positions: draw there only
    input_ids[random_rows, random_positions] = _random_replacements(
        replacement_u[random_rows, random_positions], original_ids[random_rows, random_positions], vocab)

    # Row-major nonzero lists each row's positions in increasing order: the sorted-positions contract.
    rows, positions = np.nonzero(chosen)
    slots = (np.cumsum(chosen, axis=1) - 1)[rows, positions]
    masked_lm_positions = np.zeros((batch_size, max_predictions), dtype=np.int32)
    masked_lm_ids = np.zeros((batch_size, max_predictions), dtype=np.int32)
    masked_lm_weights = np.zeros((batch_size, max_predictions), dtype=np.float32)
    masked_lm_positions[rows, slots] = positions
    masked_lm_ids[rows, slots] = original_ids[rows, positions]
    masked_lm_weights[rows, slots] = 1.0
    batch = {
        "input_ids": input_ids,
        "input_mask": in_sequence.astype(np.int32),
        "segment_ids": segment_ids,
        "masked_lm_positions": masked_lm_positions,
        "masked_lm_ids": masked_lm_ids,
        "masked_lm_weights": masked_lm_weights,
    }
    if with_pairs:
        batch["next_sentence_labels"] = next_sentence_labels
    return batch


def _position_weights(config: MaskingConfig, original_ids: np.ndarray) -> np.ndarray:
    """The smoothing weight of the token at every position."""
    if config.token_weights is None:
        raise ValueError("frequency_smoothing > 0 needs the training data's token counts: "
                         "config.with_token_counts(counts) (make_loader reads them from the dataset directory)")
    if int(original_ids.max(initial=0)) >= len(config.token_weights):
        raise ValueError(f"token id {int(original_ids.max())} has no weight: the token counts cover "
                         f"{len(config.token_weights)} ids, so they are another vocab's")
    return config.token_weights[original_ids]


def _random_replacements(uniform: np.ndarray, original_ids: np.ndarray, vocab: VocabInfo) -> np.ndarray:
    """Per position, a non-special token other than the original, uniformly, from one uniform draw.

    slot = floor(u * n) picks among the n replacement ids; where that is the original token, the fraction
    u * n - slot (uniform on [0, 1) given the slot) picks among the other n - 1. Every other draw keeps the token
    `floor(u * n)` always gave, so a batch changed from before only where the original token was drawn back.
    """
    count = len(vocab.replacement_ids)
    scaled = uniform * count
    slot = np.minimum(scaled.astype(np.int64), count - 1)
    drawn = vocab.replacement_ids[slot]
    drawn_back = drawn == original_ids
    if count > 1 and drawn_back.any():
        other = np.minimum(((scaled - slot) * (count - 1)).astype(np.int64), count - 2)
        other += other >= slot  # skip the original's own slot
        drawn = np.where(drawn_back, vocab.replacement_ids[other], drawn)
    return drawn


def mask_example(
    example: records.PairExample | records.PackedExample,
    *,
    max_seq_length: int,
    config: MaskingConfig,
    vocab: VocabInfo,
    seed: int,
    epoch: int,
    index: int,
) -> dict[str, np.ndarray]:
    """One masked, padded example: [S] and [P] arrays and, for a sentence pair, a scalar `next_sentence_labels`."""
    batch = mask_batch(
        [example], max_seq_length=max_seq_length, config=config, vocab=vocab, seed=seed, epochs=epoch,
        indices=[index],
    )
    return {name: value[0] for name, value in batch.items()}
