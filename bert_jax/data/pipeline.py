"""grain input pipeline: built ArrayRecord shards -> per-host, shuffled, masked, batched NumPy batches.

Any built dataset: sentence pairs (`nsp_pairs`: batches with `next_sentence_labels`) or packed sequences
(`full_sentences`, `doc_sentences`: segment ids 0, no `next_sentence_labels`), with any vocab. The example kind is
read from the directory's build_config.json and the vocab from the files it carries (`VocabInfo.from_data_dir`).

    DATA_DIR/seq_{L}/{split}-*-of-*.array_record
      -> slots of this host (record keys process_index, process_index + process_count, ...)
      -> shuffle per epoch (grain index shuffle, seed + epoch) -> repeat num_epochs
      -> (epoch, record key) per slot -> batch of per-host size -> read, decode, mask (one vectorised call)
      -> optional worker processes (grain mp_prefetch)

Why grain's dataset API (`MapDataset` -> `IterDataset`) and not the legacy `grain.DataLoader`: the DataLoader
batches inside each worker process, so which examples share a batch depends on `worker_count`, and its `Map`
transforms never see the record index or epoch that masking is keyed on. Here batching happens on the
random-access `MapDataset` before worker processes are involved, so batch k is the same for any
`worker_count`; each worker computes whole batches. Masking randomness is a function of (seed, epoch, record
key) only (see masking.py), never of grain's per-worker rng. Frequency-smoothed masking adds one more input, the
same for every batch: token weights from the train split's counts (`token_counts.py`), read once here.

Iterator state: `it = iter(loader)`; `state = it.get_state()` (a small JSON-serialisable dict) and
`it.set_state(state)` on a fresh iterator of an identically configured loader resumes bit-exactly. Orbax saves
it with `grain.checkpoint.CheckpointSave(it)` / restores with `grain.checkpoint.CheckpointRestore(it)`.
The state records positions per worker, so restore with the same `worker_count`.

Sharding across JAX processes is strided: process i reads record keys i, i + n, i + 2n, ...; every process gets
the same number of slots, so all hosts run the same number of steps. With `drop_remainder=True` the last
`num_records % n` records of a split are not read (at most n - 1, logged); with `drop_remainder=False`
(evaluation) every record is read exactly once per epoch and the missing slots of the last host/batch are
filled with padding examples of weight 0, flagged by an extra `example_weights` [B] float32 field (1 = real).
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import re
from typing import Sequence

import grain
import numpy as np

from bert_jax import storage
from bert_jax.data import examples as example_kinds
from bert_jax.data import token_counts
from bert_jax.data.build_layout import stored_example_kind
from bert_jax.data.masking import MaskingConfig, VocabInfo, mask_batch
from bert_jax.errors import InputError

_SHARD_NAME = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.array_record$")
# One prefetch thread overlaps masking with the caller's work; more threads only contend for the GIL.
_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)


# What every batch of the loader holds, whatever the example kind (which may add labels, `ExampleKind.labels`).
MASKED_LM_FIELDS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                    "masked_lm_weights")


def batch_fields(data_dir: str) -> tuple[str, ...]:
    """The fields of the training batches `make_loader` yields for the dataset in `data_dir` (eval batches add
    `example_weights`)."""
    return MASKED_LM_FIELDS + tuple(example_kinds.example_kind(stored_example_kind(data_dir)).labels)


def count_records(paths: Sequence[str]) -> int:
    """How many examples the shards hold (their indexes only: nothing is decoded)."""
    return len(grain.sources.ArrayRecordDataSource(list(paths)))


def shard_paths(data_dir: str, *, max_seq_length: int, split: str) -> list[str]:
    """The complete, sorted list of `{split}` shards for one sequence length; clear errors otherwise."""
    build_hint = (
        f"build it with `python -m bert_jax.data.build --input ... --vocab VOCAB --output {data_dir} "
        f"--max_seq_length {max_seq_length}`"
    )
    if not os.path.isdir(data_dir):
        raise InputError(f"dataset directory {data_dir!r} does not exist: {build_hint}")
    length_dir = os.path.join(data_dir, f"seq_{max_seq_length}")
    if not os.path.isdir(length_dir):
        built = sorted(int(d[4:]) for d in os.listdir(data_dir) if re.fullmatch(r"seq_\d+", d))
        raise InputError(
            f"{length_dir!r} does not exist (lengths built in {data_dir}: {built or 'none'}): {build_hint}"
        )
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(length_dir, f"{split}-*.array_record")))
    if not names:
        raise InputError(f"no {split!r} shards ({split}-*-of-*.array_record) in {length_dir!r}: {build_hint}")
    matches = [_SHARD_NAME.match(name) for name in names]
    counts = {int(m["count"]) for m in matches if m}
    if any(m is None for m in matches) or len(counts) != 1:
        raise InputError(
            f"{length_dir!r} holds {split} shards of different builds or foreign files ({names[:4]}...): "
            f"remove it and rebuild ({build_hint})"
        )
    (count,) = counts
    missing = sorted(set(range(count)) - {int(m["index"]) for m in matches})
    if missing:
        raise InputError(
            f"{length_dir!r} lacks {len(missing)} of {count} {split} shards (e.g. "
            f"{split}-{missing[0]:05d}-of-{count:05d}.array_record): the build was interrupted; run the same "
            f"build command again to finish it"
        )
    return [os.path.join(length_dir, name) for name in names]


def _allow_unparsed_absl_flags() -> None:
    """grain's worker start reads an absl flag, which raises in programs that do not use absl.app
    (google/grain#1355, fixed after grain 0.2.18): mark flags parsed, keeping their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


@dataclasses.dataclass(frozen=True)
class _SlotToRecord(grain.transforms.MapWithIndex):
    """(position in the repeated stream, slot of this host) -> (epoch, global record key; -1 = padding)."""

    slots_per_epoch: int
    process_index: int
    process_count: int
    num_records: int

    def map_with_index(self, index: int, slot: int) -> tuple[int, int]:
        record_key = self.process_index + self.process_count * int(slot)
        return index // self.slots_per_epoch, record_key if record_key < self.num_records else -1


def _stack_slots(slots: Sequence[tuple[int, int]]) -> np.ndarray:
    return np.asarray(slots, dtype=np.int64).reshape(len(slots), 2)


@dataclasses.dataclass(frozen=True)
class _ReadAndMask(grain.transforms.Map):
    """[b, 2] (epoch, record key) -> one masked batch of the batch contract (padded to batch_size rows)."""

    example_kind: str  # a name in bert_jax.data.examples.EXAMPLE_KINDS: how records decode, what padding is
    paths: tuple[str, ...]
    batch_size: int
    max_seq_length: int
    config: MaskingConfig
    vocab: VocabInfo
    seed: int
    with_example_weights: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "_source", grain.sources.ArrayRecordDataSource(list(self.paths)))
        kind = example_kinds.example_kind(self.example_kind)
        object.__setattr__(self, "_decode", kind.decode)
        # Special tokens only ([CLS] [SEP] [SEP], or <s> </s>): nothing to predict, attention stays finite.
        object.__setattr__(self, "_padding", kind.padding_example(self.vocab.specials))

    def __getstate__(self) -> dict:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def map(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        epochs = np.zeros(self.batch_size, dtype=np.int64)
        keys = np.full(self.batch_size, -1, dtype=np.int64)
        epochs[: len(slots)], keys[: len(slots)] = slots[:, 0], slots[:, 1]
        real = keys >= 0
        examples = [self._decode(self._source[int(key)]) if key >= 0 else self._padding for key in keys]
        batch = mask_batch(
            examples, max_seq_length=self.max_seq_length, config=self.config, vocab=self.vocab, seed=self.seed,
            epochs=epochs, indices=np.where(real, keys, 0),
        )
        if self.with_example_weights:
            batch["example_weights"] = real.astype(np.float32)
        return batch


def make_loader(
    data_dir: str,
    *,
    max_seq_length: int,
    split: str = "train",
    global_batch_size: int,
    max_predictions: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    worker_count: int = 0,
    masking: MaskingConfig | None = None,
    num_epochs: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = True,
) -> grain.IterDataset:
    """A deterministic, checkpointable loader of this host's masked batches (see the module docstring).

    Each batch holds `global_batch_size // process_count` examples. `num_epochs=None` repeats forever.
    For evaluation: `split="eval", shuffle=False, num_epochs=1, drop_remainder=False`. With
    `masking.frequency_smoothing > 0` the token weights come from the train split's `token_counts.seq_L.npy`,
    counted once (and written there) for a directory built before the builder wrote it (`token_counts.py`).
    """
    if process_index is None or process_count is None:
        import jax  # lazily: building a loader for inspection must not initialise a backend

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, process_count={process_count})")
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be a positive multiple of the number of JAX processes "
            f"({process_count}): each host loads global_batch_size // process_count examples; change "
            f"the batch size to a multiple of {process_count}"
        )
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32) (grain's shuffle seed), got {seed}")
    if num_epochs is not None and num_epochs <= 0:
        raise ValueError(f"num_epochs must be positive or None (repeat forever), got {num_epochs}")
    if masking is None:
        masking = MaskingConfig(max_predictions=max_predictions)
    elif masking.max_predictions != max_predictions:
        raise ValueError(
            f"masking.max_predictions={masking.max_predictions} disagrees with max_predictions={max_predictions}"
        )
    batch_size = global_batch_size // process_count

    data_dir = storage.local_copy(data_dir, flag="data.dir")  # array_record reads local files: gs:// is mirrored
    paths = shard_paths(data_dir, max_seq_length=max_seq_length, split=split)
    num_records = len(grain.sources.ArrayRecordDataSource(paths))
    if num_records == 0:
        raise InputError(f"the {split} shards of {data_dir}/seq_{max_seq_length} hold no examples: rebuild it")
    if drop_remainder:
        slots_per_epoch = num_records // process_count
        if num_records % process_count:
            logging.warning(
                "%s/seq_%d %s: %d of %d records are not read, so that all %d processes take equal shares",
                data_dir, max_seq_length, split, num_records % process_count, num_records, process_count,
            )
    else:
        slots_per_epoch = math.ceil(num_records / process_count)
    if slots_per_epoch == 0:
        raise InputError(
            f"{split} split of {data_dir}/seq_{max_seq_length} has {num_records} examples, fewer than the "
            f"{process_count} processes: build more data or pass drop_remainder=False"
        )
    vocab = VocabInfo.from_data_dir(data_dir)
    example_kind = stored_example_kind(data_dir)
    example_kinds.example_kind(example_kind)  # a clear error for a kind this version does not know
    if masking.smoothed and masking.token_weights is None:
        # The train split's counts weigh the tokens of every split: eval is masked as training is.
        train_paths = paths if split == "train" else shard_paths(data_dir, max_seq_length=max_seq_length,
                                                                 split="train")
        masking = masking.with_token_counts(token_counts.load_or_count(
            data_dir, max_seq_length=max_seq_length, train_paths=train_paths, vocab_size=vocab.vocab_size))

    slots = grain.MapDataset.range(slots_per_epoch)
    if shuffle:
        slots = slots.shuffle(seed=seed)  # reshuffled every epoch with seed + epoch
    dataset = (
        slots.repeat(num_epochs)
        .map_with_index(_SlotToRecord(slots_per_epoch, process_index, process_count, num_records))
        .batch(batch_size, drop_remainder=drop_remainder, batch_fn=_stack_slots)
        .map(
            _ReadAndMask(
                example_kind=example_kind, paths=tuple(paths), batch_size=batch_size, max_seq_length=max_seq_length, config=masking,
                vocab=vocab, seed=seed, with_example_weights=not drop_remainder,
            )
        )
        .to_iter_dataset(_READ_OPTIONS)
    )
    if worker_count > 0:
        _allow_unparsed_absl_flags()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return dataset
