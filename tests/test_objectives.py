"""Objectives as plug-ins: masked LM alone trains the tiny config end to end (no NSP anywhere: batches, model, logs,
TensorBoard, export) and resumes bit for bit; a checkpoint written before the training core took objectives still
resumes exactly, and one that cannot resume says why."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from bert_jax import errors
from bert_jax.configuration import load_config
from bert_jax.training import checkpointing, loop as trainer, setup, sharding
from tests.run_helpers import ONE_PHASE, REPO, environment, losses, overrides, records, tensorboard_scalars

FIXTURE = REPO / "tests" / "fixtures" / "checkpoint_v1"  # written by the trainer at commit 5ecbba2
# The tiny config's fields at that commit that the config has changed since (the demo's recipe, 2026-11-27).
TINY_AT_FIXTURE = ["--config.model.hidden_dropout_prob=0.1", "--config.model.attention_probs_dropout_prob=0.1",
                   "--config.optimizer.learning_rate=1e-3"]
MLM_STEPS = 16


def _mlm_config(dataset: Path, **fields):
    base = dict(objective="mlm", train_steps=MLM_STEPS, phases=ONE_PHASE, checkpoint_every=8, eval_every=8,
                export_at_end=True)
    return load_config("configs/base_cased.py:tiny", overrides(dataset, **{**base, **fields}))


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def mlm_run(sample_dataset, tmp_path_factory):
    """An MLM-only run of the tiny config on the sample data, recording the batch fields the step received and the
    console lines."""
    workdir = tmp_path_factory.mktemp("mlm") / "run"
    fields = set()
    real_global_batch = sharding.global_batch

    def recording(host_batch, *args):
        fields.update(host_batch)
        return real_global_batch(host_batch, *args)

    console = _Lines()
    logging.getLogger("bert_jax").addHandler(console)
    logging.getLogger("bert_jax").setLevel(logging.INFO)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sharding, "global_batch", recording)
            result = trainer.run(_mlm_config(sample_dataset), str(workdir))
    finally:
        logging.getLogger("bert_jax").removeHandler(console)
    assert result.status == "finished" and result.step == MLM_STEPS
    return workdir, fields, console.lines


def test_mlm_only_batches_carry_no_next_sentence_labels(mlm_run):
    _, fields, _ = mlm_run
    assert fields == {"input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                      "masked_lm_weights", "example_weights"}  # example_weights: the eval batches' padding flags


def test_mlm_only_starts_at_uniform_loss_and_learns(mlm_run):
    workdir, _, _ = mlm_run
    train = losses(workdir)
    assert sorted(train) == list(range(1, MLM_STEPS + 1))
    assert abs(train[1] - math.log(4096)) < 0.1, train[1]  # the first step's loss is that of untrained logits
    first, last = np.mean([train[s] for s in range(1, 5)]), np.mean([train[s] for s in range(13, 17)])
    assert last < first - 0.3, (first, last)


def test_mlm_only_logs_and_tensorboard_show_no_nsp(mlm_run):
    workdir, _, console = mlm_run
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {"mlm_loss", "mlm_accuracy"} <= set(records(workdir, "eval")[MLM_STEPS])
    assert "mlm_accuracy" in records(workdir)[1]
    assert not [key for line in lines for key in line if "nsp" in key]
    tags = tensorboard_scalars(workdir / "tensorboard")
    assert "train/mlm_accuracy" in tags and not [tag for tag in tags if "nsp" in tag]
    metric_lines = [line for line in console if "config (resolved" not in line]  # the config names its data kind
    assert any("mlm_acc" in line for line in metric_lines) and not [line for line in metric_lines if "nsp" in line]


def test_mlm_only_model_has_no_nsp_head_and_exports_as_masked_lm(mlm_run, sample_dataset):
    workdir, _, _ = mlm_run
    run = setup.build(_mlm_config(sample_dataset))
    assert "nsp" not in run.abstract_state.params and "pooler" not in run.abstract_state.params["bert"]
    manager = checkpointing.make_manager(str(workdir), keep=3, read_only=True)
    restored, _ = checkpointing.restore(manager, MLM_STEPS, run.abstract_state, run.shardings)  # the same tree
    assert int(restored.step) == MLM_STEPS

    import transformers

    export = workdir / "export"
    assert json.loads((export / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    model, info = transformers.BertForMaskedLM.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    embedding = restored.params["bert"]["embeddings"]["word_embeddings"]["embedding"].get_value()
    np.testing.assert_array_equal(model.bert.embeddings.word_embeddings.weight.detach().numpy(), np.asarray(embedding))


def test_mlm_only_resumes_bit_for_bit(mlm_run, sample_dataset, tmp_path):
    workdir, _, _ = mlm_run
    partial = tmp_path / "partial"
    shutil.copytree(workdir, partial)
    shutil.rmtree(partial / "checkpoints" / str(MLM_STEPS))
    shutil.rmtree(partial / "export")
    result = trainer.run(_mlm_config(sample_dataset), str(partial))
    assert result.status == "finished"
    assert losses(partial) == losses(workdir)
    assert losses(partial, "eval") == losses(workdir, "eval")


def test_checkpoint_from_before_the_redesign_resumes_exactly(sample_dataset, tmp_path):
    """Written by the trainer before models, objectives and the core were separated (its saved config has no
    `objective`, `model.model_type` or speed-lever fields); resumed by this one, it continues with the losses the
    old trainer logged when it ran on uninterrupted from the same checkpoint."""
    expected = json.loads((FIXTURE / "expected.json").read_text())
    workdir = tmp_path / "run"
    shutil.copytree(FIXTURE / "6", workdir / "checkpoints" / "6")
    command = [sys.executable, "-m", "bert_jax.train", "--config", "configs/base_cased.py:tiny",
               "--workdir", str(workdir), f"--config.data.dir={sample_dataset}", f"--config.phases={ONE_PHASE}",
               *TINY_AT_FIXTURE, *expected["command_overrides"]]
    result = subprocess.run(command, cwd=REPO, env=environment(2), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "at step 6" in result.stderr
    resumed = losses(workdir)
    assert sorted(resumed) == [7, 8, 9]
    for step, loss in expected["train_loss"].items():
        assert resumed[int(step)] == pytest.approx(loss, rel=1e-6), step
    assert losses(workdir, "eval")[9] == pytest.approx(expected["eval_loss_9"], rel=1e-6)


def _fixture_config(sample_dataset, *extra):
    fields = [arg.removeprefix("--config.") for arg in TINY_AT_FIXTURE + json.loads(
        (FIXTURE / "expected.json").read_text())["command_overrides"]]
    fields = [f for f in fields if not f.startswith("batch_size=")] + ["batch_size=16"]  # 16 emulated devices here
    return load_config("configs/base_cased.py:tiny",
                       [*fields, f"data.dir={sample_dataset}", f"phases={ONE_PHASE}", *extra])


@pytest.mark.parametrize("extra,message", [
    (["model.hidden_size=32"], "was trained with a different model (fields ['hidden_size']"),
    (["objective=mlm"], "was trained with objective 'mlm_nsp' and this run asks for 'mlm'"),
])
def test_an_old_checkpoint_that_cannot_resume_says_why(sample_dataset, tmp_path, extra, message):
    shutil.copytree(FIXTURE / "6", tmp_path / "checkpoints" / "6")
    with pytest.raises(errors.CheckpointError) as error:
        trainer.run(_fixture_config(sample_dataset, *extra), str(tmp_path))
    assert message in str(error.value)


def test_a_damaged_checkpoint_is_a_clear_error(sample_dataset, tmp_path):
    shutil.copytree(FIXTURE / "6", tmp_path / "checkpoints" / "6")
    data_files = sorted((tmp_path / "checkpoints" / "6" / "state").rglob("d/*"), key=lambda p: p.stat().st_size)
    data_files[-1].write_bytes(data_files[-1].read_bytes()[:1000])  # the largest array file, cut short
    with pytest.raises(errors.CheckpointError, match="does not fit this run") as error:
        trainer.run(_fixture_config(sample_dataset), str(tmp_path))
    assert "checkpoints/6" in str(error.value)
