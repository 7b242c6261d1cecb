"""grain loader: batch contract, per-host sharding, per-epoch shuffle, masking keyed by record, save/restore."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from bert_jax.data.masking import MaskingConfig, VocabInfo, mask_example
from bert_jax.data.pipeline import make_loader
from bert_jax.errors import InputError
from tests.data_helpers import write_dataset

SEQ_LEN = 32
NUM_TRAIN = 203  # odd, and not a multiple of the batch: exercises remainders and epoch-straddling batches
NUM_EVAL = 37


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dataset"))
    examples = write_dataset(root, lengths=(SEQ_LEN,), num_train=NUM_TRAIN, num_eval=NUM_EVAL, train_shards=3)
    return root, examples[SEQ_LEN]["train"]


def loader_for(root, **overrides):
    options = dict(max_seq_length=SEQ_LEN, global_batch_size=16, max_predictions=5, seed=7, process_index=0,
                   process_count=1)
    options.update(overrides)
    return make_loader(root, **options)


def record_keys(batch, examples) -> list[int]:
    """Which stored record each (real) row is: un-mask the row and look its tokens up."""
    by_tokens = {tuple(ex.input_ids.tolist()): key for key, ex in enumerate(examples)}
    assert len(by_tokens) == len(examples), "test data must have distinct examples"
    keys = []
    for row in range(len(batch["input_ids"])):
        if "example_weights" in batch and batch["example_weights"][row] == 0:
            continue
        ids = np.array(batch["input_ids"][row])
        weights = batch["masked_lm_weights"][row] > 0
        ids[batch["masked_lm_positions"][row][weights]] = batch["masked_lm_ids"][row][weights]
        keys.append(by_tokens[tuple(ids[: int(batch["input_mask"][row].sum())].tolist())])
    return keys


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


def test_batch_contract_and_masking_keyed_by_record(dataset):
    root, examples = dataset
    vocab = VocabInfo.from_vocab_file(os.path.join(root, "vocab.txt"))
    config = MaskingConfig(max_predictions=5)
    batches = list(loader_for(root, num_epochs=2))
    assert len(batches) == 2 * NUM_TRAIN // 16  # batches straddle the epoch boundary; only the very end drops
    for batch in batches:
        assert {k: (np.asarray(v).shape, np.asarray(v).dtype) for k, v in batch.items()} == {
            "input_ids": ((16, SEQ_LEN), np.int32), "input_mask": ((16, SEQ_LEN), np.int32),
            "segment_ids": ((16, SEQ_LEN), np.int32), "masked_lm_positions": ((16, 5), np.int32),
            "masked_lm_ids": ((16, 5), np.int32), "masked_lm_weights": ((16, 5), np.float32),
            "next_sentence_labels": ((16,), np.int32),
        }
    # Every row equals mask_example of its record with (seed, epoch, record key): the documented determinism.
    for position in range(len(batches) * 16):
        batch, row = batches[position // 16], position % 16
        (key,) = record_keys({k: np.asarray(v)[row : row + 1] for k, v in batch.items()}, examples)
        epoch = position // NUM_TRAIN
        expected = mask_example(examples[key], max_seq_length=SEQ_LEN, config=config, vocab=vocab, seed=7,
                                epoch=epoch, index=key)
        for name, value in expected.items():
            np.testing.assert_array_equal(np.asarray(batch[name])[row], value, err_msg=name)


def test_epochs_cover_the_data_once_each_in_a_new_order_with_new_masks(dataset):
    root, examples = dataset
    rows = [
        (key, batch, row)
        for batch in loader_for(root, num_epochs=2, drop_remainder=False)
        for row, key in enumerate(record_keys(batch, examples))
    ]
    keys = [key for key, _, _ in rows]
    first, second = keys[:NUM_TRAIN], keys[NUM_TRAIN:]
    assert sorted(first) == sorted(second) == list(range(NUM_TRAIN))
    assert first != second and first != sorted(first), "shuffled, and reshuffled each epoch"
    assert keys == [k for b in loader_for(root, num_epochs=2, drop_remainder=False) for k in record_keys(b, examples)]
    assert keys != [k for b in loader_for(root, num_epochs=2, drop_remainder=False, seed=8)
                    for k in record_keys(b, examples)]
    unshuffled = [k for b in loader_for(root, num_epochs=1, shuffle=False, drop_remainder=False)
                  for k in record_keys(b, examples)]
    assert unshuffled == list(range(NUM_TRAIN))

    def positions_by_key(selected_rows):
        return {key: tuple(np.asarray(batch["masked_lm_positions"])[row]) for key, batch, row in selected_rows}

    epoch_0, epoch_1 = positions_by_key(rows[:NUM_TRAIN]), positions_by_key(rows[NUM_TRAIN:])
    changed = np.mean([epoch_0[k] != epoch_1[k] for k in range(NUM_TRAIN)])
    assert changed > 0.8, "dynamic masking: most records get a new mask in the next epoch"
    static = MaskingConfig(max_predictions=5, static=True)
    static_rows = [(key, batch, row)
                   for batch in loader_for(root, num_epochs=2, drop_remainder=False, masking=static)
                   for row, key in enumerate(record_keys(batch, examples))]
    assert positions_by_key(static_rows[:NUM_TRAIN]) == positions_by_key(static_rows[NUM_TRAIN:])


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_two_processes_split_the_data_disjointly(dataset, drop_remainder):
    root, examples = dataset
    per_process = []
    for process_index in range(2):
        loader = loader_for(root, global_batch_size=16, process_index=process_index, process_count=2,
                            num_epochs=1, drop_remainder=drop_remainder)
        batches = list(loader)
        assert all(np.asarray(b["input_ids"]).shape == (8, SEQ_LEN) for b in batches), "per-host batch = 16 / 2"
        per_process.append((len(batches), [k for b in batches for k in record_keys(b, examples)]))
    (count_0, keys_0), (count_1, keys_1) = per_process
    assert count_0 == count_1, "every host runs the same number of steps"
    assert not set(keys_0) & set(keys_1) and len(set(keys_0)) == len(keys_0) and len(set(keys_1)) == len(keys_1)
    covered = set(keys_0) | set(keys_1)
    if drop_remainder:  # 101 slots each = 12 batches of 8 per host: the rest of each host's slots is dropped
        assert len(keys_0) == len(keys_1) == (NUM_TRAIN // 2) // 8 * 8
    else:  # every record exactly once; the odd one out is a zero-weight padding row on host 1
        assert covered == set(range(NUM_TRAIN))


def test_eval_split_reads_everything_once_and_pads_the_last_batch(dataset):
    root, examples = dataset
    loader = loader_for(root, split="eval", num_epochs=1, shuffle=False, drop_remainder=False)
    batches = list(loader)
    assert len(batches) == -(-NUM_EVAL // 16)
    weights = np.concatenate([np.asarray(b["example_weights"]) for b in batches])
    assert weights.tolist() == [1.0] * NUM_EVAL + [0.0] * (len(weights) - NUM_EVAL)
    last = batches[-1]
    padding = np.asarray(last["example_weights"]) == 0
    assert not np.asarray(last["masked_lm_weights"])[padding].any(), "padding rows predict nothing"
    assert (np.asarray(last["input_mask"])[padding].sum(axis=1) == 3).all(), "[CLS] [SEP] [SEP]"


@pytest.mark.parametrize("worker_count", [0, 2])
def test_restored_iterator_continues_bit_exactly_across_an_epoch_boundary(dataset, worker_count):
    root, _ = dataset
    reference = list(loader_for(root, num_epochs=3))  # in-process reference, also the worker_count check
    epoch_batches = NUM_TRAIN // 16  # 12.7 batches per epoch: batch 12 straddles epochs 0 and 1
    stop_at = epoch_batches - 1
    loader = loader_for(root, num_epochs=3, worker_count=worker_count)
    iterator = iter(loader)
    resumed = [next(iterator) for _ in range(stop_at)]
    state = iterator.get_state()
    del iterator
    restored = iter(loader_for(root, num_epochs=3, worker_count=worker_count))
    restored.set_state(state)
    resumed += list(restored)
    assert_same_batches(resumed, reference)  # identical batches for worker_count 0 and 2
    del restored, resumed, reference
    gc.collect()  # release worker shared memory before the interpreter exits


def test_clear_errors(dataset, tmp_path):
    root, _ = dataset
    with pytest.raises(InputError, match="does not exist.*bert_jax.data.build"):
        loader_for(str(tmp_path / "missing"))
    with pytest.raises(InputError, match=r"seq_64.*lengths built.*\[32\].*--max_seq_length 64"):
        loader_for(root, max_seq_length=64)
    with pytest.raises(ValueError, match="multiple of the number of JAX processes"):
        loader_for(root, global_batch_size=15, process_count=2)
    with pytest.raises(ValueError, match="disagrees"):
        loader_for(root, masking=MaskingConfig(max_predictions=6))
    broken = str(tmp_path / "broken")
    write_dataset(broken, lengths=(SEQ_LEN,), num_train=30, num_eval=5, train_shards=3)
    os.remove(os.path.join(broken, f"seq_{SEQ_LEN}", "train-00001-of-00003.array_record"))
    with pytest.raises(InputError, match="lacks 1 of 3 train shards.*train-00001-of-00003.*interrupted"):
        loader_for(broken)
