"""Fine-tuning batches cut to their bucketed length (`finetune.length_bucket`) and grouped by length
(`finetune.group_by_length`): cutting trains and evaluates exactly what full-length batches do, on fewer tokens;
grouping orders an epoch as transformers' `get_length_grouped_indices` does for the same permutation."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import transformers.trainer_pt_utils as hf_trainer_utils

from bert_jax.training import length_buckets, loop
from tests.run_helpers import losses, records
from tests.test_finetune import WORDS, export_tiny_bert, run_config, tiny_model, write_rte  # noqa: F401 - fixture


def test_a_batch_is_cut_to_its_longest_row_rounded_up_to_the_bucket():
    mask = np.zeros((3, 32), np.int32)
    mask[0, :5], mask[1, :17], mask[2, :2] = 1, 1, 1
    batch = {"input_ids": mask * 7, "input_mask": mask, "labels": np.array([0, 1, 0]),
             "offsets": np.zeros((3, 32, 2)), "start_positions": np.array([1, 16, 0])}
    assert length_buckets.used_length(mask) == 17
    assert [length_buckets.bucketed_length(mask, b) for b in (0, 1, 8, 16, 64)] == [32, 17, 24, 32, 32]
    cut = length_buckets.cut(batch, 24)
    assert cut["input_ids"].shape == cut["input_mask"].shape == (3, 24) and cut["offsets"].shape == (3, 24, 2)
    assert cut["labels"] is batch["labels"] and cut["start_positions"] is batch["start_positions"]
    assert cut["input_mask"].sum() == mask.sum()  # only padding went
    choices = np.zeros((2, 4, 32), np.int32)  # multiple choice: [B, C, S]
    choices[1, 3, :9] = 1
    assert length_buckets.bucketed_length(choices, 4) == 12
    assert length_buckets.cut({"input_ids": choices, "input_mask": choices}, 12)["input_mask"].shape == (2, 4, 12)
    assert list(length_buckets.example_lengths(choices)) == [0, 9]
    logits = np.ones((2, 12), np.float32)
    back = length_buckets.pad_back({"start_logits": logits, "other": np.ones((2, 12))}, ("start_logits",), 32)
    assert back["start_logits"].shape == (2, 32) and back["other"].shape == (2, 12)
    assert (back["start_logits"][:, 12:] == np.finfo(np.float32).min).all()


@pytest.mark.parametrize("count,batch_size", [(2000, 32), (100, 8), (10, 4)])
def test_grouped_order_is_transformers_for_the_same_permutation(count, batch_size, monkeypatch):
    lengths = np.random.default_rng(count).integers(3, 60, size=count)
    order = length_buckets.LengthGroupedOrder(lengths, batch_size, seed=5)
    for epoch in (0, 1):
        ours = order.epoch_order(epoch)
        permutation = np.random.default_rng([5, epoch]).permutation(count)
        monkeypatch.setattr(hf_trainer_utils.torch, "randperm", lambda n, generator=None: torch.tensor(permutation))
        theirs = hf_trainer_utils.get_length_grouped_indices(lengths.tolist(), batch_size)
        assert ours.tolist() == theirs
        assert sorted(ours.tolist()) == list(range(count))  # every row once an epoch
        assert lengths[ours[0]] == lengths.max()
    assert order.epoch_order(0).tolist() != order.epoch_order(1).tolist()
    assert order[count + 3] == order.epoch_order(1)[3]


def varied_rows(count, seed):
    """RTE-layout rows, premises of 1 to 3 words and a few of 9 to 12, entailment when the hypothesis opens the
    premise."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        premise = rng.choice(WORDS, size=int(rng.integers(9, 13) if index % 20 == 7 else rng.integers(1, 4))).tolist()
        entails = index % 2 == 0
        hypothesis = premise[:2] if entails else rng.choice(WORDS, size=2).tolist()
        rows.append([str(index), " ".join(premise), " ".join(hypothesis),
                     "entailment" if entails else "not_entailment"])
    return rows


@pytest.fixture(scope="module")
def varied_dir(tmp_path_factory):
    return write_rte(tmp_path_factory.mktemp("glue_varied") / "RTE", varied_rows(48, 0), varied_rows(24, 1))


@pytest.fixture(scope="module")
def tiny_model_without_dropout(tmp_path_factory):
    """Dropout masks are drawn for the shape a step runs at, so only without dropout are two runs comparable."""
    return export_tiny_bert(tmp_path_factory.mktemp("tiny_bert_no_dropout") / "model", hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)


def test_cut_batches_train_and_evaluate_as_full_ones(tiny_model_without_dropout, varied_dir, tmp_path, caplog):
    runs = {}
    for bucket in (0, 8):
        workdir = tmp_path / f"bucket{bucket}"
        config = run_config(tiny_model_without_dropout, varied_dir, f"--config.finetune.length_bucket={bucket}",
                            "--config.finetune.epochs=1")
        with caplog.at_level(logging.INFO, logger="bert_jax"):
            caplog.clear()
            assert loop.run(config, str(workdir)).status == "finished"
        compiled = {int(r.getMessage().split("sequence length ")[1].split()[0]) for r in caplog.records
                    if r.getMessage().startswith("compiled the train step")}
        runs[bucket] = workdir, compiled
    (full, full_lengths), (short, short_lengths) = runs[0], runs[8]
    assert full_lengths == {32} and len(short_lengths) > 1 and max(short_lengths) == 32  # the phase's own first
    assert all(length % 8 == 0 for length in short_lengths)
    ours, theirs = losses(short), losses(full)
    assert sorted(ours) == sorted(theirs) == [1, 2, 3]
    for step in ours:
        assert ours[step] == pytest.approx(theirs[step], abs=2e-6), step
    cut_eval, full_eval = records(short, "eval")[3], records(full, "eval")[3]
    assert cut_eval["accuracy"] == full_eval["accuracy"] and cut_eval["examples"] == full_eval["examples"] == 24
    assert cut_eval["loss"] == pytest.approx(full_eval["loss"], abs=2e-6)
    # the work counted is the work done: fewer tokens at the same number of examples
    cut_summary, full_summary = (json.loads((w / "summary.json").read_text()) for w in (short, full))
    assert full_summary["tokens_this_run"] == 3 * 16 * 32
    assert cut_summary["tokens_this_run"] < full_summary["tokens_this_run"]
    assert cut_summary["tokens_this_run"] % (16 * 8) == 0
    trained = [r for r in records(short, "train").values()]
    assert all(r["examples_per_s"] > 0 for r in trained)


def test_grouped_batches_follow_the_grouped_order_and_resume(tiny_model, varied_dir):  # noqa: F811
    config = run_config(tiny_model, varied_dir, "--config.finetune.group_by_length=true",
                        "--config.finetune.length_bucket=1", "--config.finetune.epochs=1")
    from bert_jax.training import setup as setup_lib, task_inputs

    run_setup = setup_lib.build(config)
    examples = run_setup.objective.task_examples()
    data = task_inputs.TaskInputs(run_setup, examples)
    iterator = data.train_iterator(loop.phase_plan(config)[0])
    lengths = length_buckets.example_lengths(examples.train["input_mask"])
    seen, state = [], None
    for index in range(3):  # one epoch: 48 rows, batch 16
        if index == 2:
            state = iterator.get_state()
        batch = next(iterator)
        batch_lengths = length_buckets.example_lengths(batch["input_mask"])
        seen.append(batch_lengths)
        assert batch["input_ids"].shape[1] == batch_lengths.max()  # bucket 1: cut to the longest
    expected = length_buckets.LengthGroupedOrder(lengths, 16, config.seed).epoch_order(0)
    assert np.concatenate(seen).tolist() == lengths[expected].tolist()
    assert seen[0][0] == lengths.max()
    # a checkpointed position resumes the same stream (what the trainer saves with each checkpoint)
    resumed = data.train_iterator(loop.phase_plan(config)[0])
    resumed.set_state(state)
    assert length_buckets.example_lengths(next(resumed)["input_mask"]).tolist() == seen[2].tolist()


def test_a_negative_bucket_is_a_config_error_naming_the_field(tiny_model, varied_dir):  # noqa: F811
    from bert_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"finetune.length_bucket is -1; .*0 keeps every batch at max_seq_length"):
        run_config(tiny_model, varied_dir, "--config.finetune.length_bucket=-1")
