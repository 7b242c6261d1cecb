"""The trainer end to end on real built data: exact resume after SIGTERM and kill -9 in both phases, two processes
with jax.distributed, the non-finite stop, restore onto another mesh, and export from a run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from bert_jax import errors, export
from bert_jax.configuration import load_config, model_config
from bert_jax.interop import hf
from bert_jax.training import checkpointing, loop as trainer, phases, setup, sharding
from tests.run_helpers import (ONE_PHASE, REPO, environment, losses, overrides, records, tensorboard_scalars,
                               train_command)

def wait_for_step(workdir: Path, step: int, process: subprocess.Popen, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = max(records(workdir), default=0)
        if done >= step:
            return done
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}) before step {step}: {process.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached in {timeout} s")



def test_reference_run_trains_both_phases(reference_run):
    train = records(reference_run)
    assert sorted(train) == list(range(1, 41))
    assert {r["phase"] for s, r in train.items() if s <= 20} == {0} and {r["phase"] for s, r in train.items() if s > 20} == {1}
    evals = records(reference_run, "eval")
    assert sorted(evals) == [10, 20, 30, 40]
    assert [evals[s]["max_seq_length"] for s in (10, 20, 30, 40)] == [32, 32, 64, 64]
    first, last = np.mean([train[s]["loss"] for s in range(1, 6)]), np.mean([train[s]["loss"] for s in range(36, 41)])
    assert last < first - 0.5, (first, last)  # it learns
    manager = checkpointing.make_manager(str(reference_run), keep=3, read_only=True)
    assert manager.all_steps() == [30, 35, 40]  # keep_checkpoints=3; 20 (boundary) and earlier rotated out
    assert checkpointing.read_metadata(manager, 40)["max_seq_length"] == 64
    for field in ("tokens_per_s", "mfu", "grad_norm", "learning_rate", "mlm_accuracy", "nsp_accuracy"):
        assert all(np.isfinite(r[field]) for r in train.values()), field
    scalars = tensorboard_scalars(reference_run / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, 41))
    assert [value for _, value in scalars["eval/mlm_accuracy"]] == pytest.approx(
        [records(reference_run, "eval")[s]["mlm_accuracy"] for s in (10, 20, 30, 40)])


def test_sigterm_then_kill9_resume_every_step_exactly(reference_run, sample_dataset, tmp_path):
    """Preempted in phase 0 (SIGTERM: checkpoint, exit 0), killed with -9 in phase 1, resumed each time: every
    per-step loss and eval equals the uninterrupted run's bit for bit."""
    workdir = tmp_path / "run"
    command, env = train_command(workdir, sample_dataset), environment(4)

    first = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    wait_for_step(workdir, 3, first)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0
    log = first.stderr.read()
    assert "preemption notice (SIGTERM)" in log
    preempted_step = checkpointing.make_manager(str(workdir), keep=3, read_only=True).latest_step()
    assert preempted_step == max(records(workdir)) and 3 <= preempted_step < 20  # saved where it stopped, phase 0

    second = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    wait_for_step(workdir, 27, second)
    assert second.poll() is None, "the run finished before it could be killed"
    second.kill()  # SIGKILL: no chance to save
    second.wait(timeout=60)
    assert max(records(workdir)) < 40

    third = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resumed from" in third.stderr and "(phase 1)" in third.stderr

    assert losses(workdir) == losses(reference_run)
    assert losses(workdir, "eval") == losses(reference_run, "eval")
    assert losses(workdir, "train", "mlm_accuracy") == losses(reference_run, "train", "mlm_accuracy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_preempt_and_resume(sample_dataset, tmp_path):
    """Two local processes (gloo), 2 CPU devices each: SIGTERM to one of them stops both at the same step with a
    checkpoint; the same command resumes both from it."""
    workdir = tmp_path / "run"

    def launch():
        port = _free_port()
        return [
            subprocess.Popen(
                train_command(workdir, sample_dataset, train_steps=16, eval_every=8, phases=ONE_PHASE),
                cwd=REPO, stderr=subprocess.PIPE, text=True,
                env=environment(2, BERT_JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", BERT_JAX_NUM_PROCESSES="2",
                                BERT_JAX_PROCESS_ID=str(index)),
            )
            for index in range(2)
        ]

    def wait_all(processes, timeout, before=lambda: None):
        try:
            before()
            codes = [p.wait(timeout=timeout) for p in processes]
        finally:
            for p in processes:
                p.kill()
        logs = [p.stderr.read() for p in processes]
        assert codes == [0, 0], logs
        return logs

    processes = launch()

    def preempt_one():
        wait_for_step(workdir, 4, processes[0])
        processes[1].send_signal(signal.SIGTERM)

    logs = wait_all(processes, 180, preempt_one)
    assert "preemption notice (SIGTERM)" in logs[0]  # process 0 logs; it was told through the coordinator
    saved = checkpointing.make_manager(str(workdir), keep=3, read_only=True).latest_step()
    assert saved is not None and saved < 16
    assert json.loads((workdir / "checkpoints" / str(saved) / "metadata" / "metadata").read_text())["process_count"] == 2
    assert len(list((workdir / "checkpoints" / str(saved) / "data").iterdir())) >= 2  # each host's data position

    logs = wait_all(launch(), 300)
    assert "resumed from" in logs[0] and f"at step {saved}" in logs[0]
    train = records(workdir)
    assert sorted(train) == list(range(1, 17))  # each step logged once: the resumed part continued the first
    assert np.mean([train[s]["loss"] for s in range(12, 17)]) < np.mean([train[s]["loss"] for s in range(1, 6)])


def _config(dataset: Path, **fields):
    return load_config("configs/base_cased.py:tiny", overrides(dataset, **fields))


def test_nonfinite_steps_stop_the_run_with_the_last_good_checkpoint(sample_dataset, tmp_path, monkeypatch):
    """From step 7 on, NaN is injected into the batch's MLM weights: each such step is skipped, and the third in a
    row stops the run with an error naming the setting; the checkpoint at step 5 is intact and finite."""
    config = _config(sample_dataset, train_steps=20, max_nonfinite_steps=3, eval_every=100, phases=ONE_PHASE)
    real_global_batch = sharding.global_batch
    calls = {"n": 0}

    def poisoned(host_batch, *args):
        calls["n"] += 1
        if calls["n"] >= 7:
            host_batch = dict(host_batch, masked_lm_weights=np.full_like(host_batch["masked_lm_weights"], np.nan))
        return real_global_batch(host_batch, *args)

    monkeypatch.setattr(sharding, "global_batch", poisoned)
    monkeypatch.chdir(tmp_path)  # a relative --workdir, as users type it
    with pytest.raises(errors.TrainingError, match="max_nonfinite_steps=3") as error:
        trainer.run(config, "run")
    tmp_path = tmp_path / "run"
    assert "step 5" in str(error.value)
    train = records(tmp_path)
    assert [train[s]["nonfinite_steps"] for s in range(6, 10)] == [0, 1, 1, 1]
    manager = checkpointing.make_manager(str(tmp_path), keep=3, read_only=True)
    assert manager.latest_step() == 5
    config_model = model_config(config)
    from flax import nnx
    from bert_jax.models.bert import BertForPreTraining

    abstract = nnx.eval_shape(lambda: BertForPreTraining(config_model, rngs=nnx.Rngs(0)))
    _, abstract_params = nnx.split(abstract, nnx.Param)
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    params = checkpointing.restore_params(manager, 5, abstract_params,
                                          jax.tree.map(lambda _: sharding.replicated(mesh), abstract_params))
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params))


def test_restore_onto_a_different_mesh_continues_the_run(sample_dataset, tmp_path):
    """Written on data 16, resumed on data 4 x fsdp 4 (parameters and Adam moments now split): the continued
    losses equal the uninterrupted data-16 run's to f32 reduction-order tolerance."""
    full = tmp_path / "full"
    trainer.run(_config(sample_dataset, train_steps=6, checkpoint_every=3, eval_every=100, phases=ONE_PHASE,
                        profile_start_step=1, profile_steps=2), str(full))
    assert list((full / "profile").rglob("*.xplane.pb")), "the requested jax.profiler trace is missing"
    partial = tmp_path / "partial"
    shutil.copytree(full, partial)
    shutil.rmtree(partial / "checkpoints" / "6")
    config = _config(sample_dataset, train_steps=6, checkpoint_every=3, eval_every=100, phases=ONE_PHASE,
                     **{"mesh.data": 4, "mesh.fsdp": 4})
    result = trainer.run(config, str(partial))
    assert result.status == "finished" and result.step == 6
    resumed, reference = losses(partial), losses(full)
    assert sorted(resumed) == list(range(1, 7))
    for step in range(4, 7):
        assert abs(resumed[step] - reference[step]) <= 2e-5, (step, resumed[step], reference[step])

    # The checkpoint also restores onto 4 of the 16 devices, value for value.
    manager = checkpointing.make_manager(str(full), keep=3, read_only=True)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 1}, jax.devices()[:4])
    four = setup.build(_config(sample_dataset, train_steps=6, phases=ONE_PHASE, **{"mesh.data": 2, "mesh.fsdp": 2}),
                       jax.devices()[:4])
    assert dict(four.mesh.shape) == dict(mesh.shape)
    restored, _ = checkpointing.restore(manager, 6, four.abstract_state, four.shardings)
    assert len(restored.params["bert"]["embeddings"]["word_embeddings"]["embedding"].get_value().sharding.device_set) == 4
    assert int(restored.step) == 6
    one = setup.build(_config(sample_dataset, train_steps=6, phases=ONE_PHASE, **{"mesh.data": 1}), jax.devices()[:1])
    reference, _ = checkpointing.restore(manager, 6, one.abstract_state, one.shardings)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_export_from_workdir_writes_the_checkpoint_weights(reference_run, tmp_path, capsys):
    out = tmp_path / "hf"
    assert export.main(["--workdir", str(reference_run), "--step", "35", "--output", str(out)]) == 0
    assert "step 35" in capsys.readouterr().err
    model, vocab, _, step = export.load_from_workdir(str(reference_run), 35)
    assert step == 35 and vocab is not None
    written = hf.read_safetensors(out)
    expected = hf.to_hf_state_dict(model)
    assert set(written) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], np.asarray(value), err_msg=name)
    import transformers

    loaded = transformers.BertForPreTraining.from_pretrained(out)
    assert loaded.config.hidden_size == 32 and loaded.config.num_hidden_layers == 1
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")  # the card of step 35: its eval is step 30's, the last before it
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["mlm_accuracy"] == records(
        reference_run, "eval")[30]["mlm_accuracy"]
    assert "for 35 steps" in card.text and "| 1 | 20-39 | 64 | 10 |" in card.text

    assert export.main(["--workdir", str(reference_run), "--step", "7", "--output", str(tmp_path / "x")]) == 2
    assert "available: [30, 35, 40]" in capsys.readouterr().err
    assert export.main(["--workdir", str(tmp_path / "nothing"), "--output", str(tmp_path / "y")]) == 2


def test_export_from_workdir_to_onnx_equals_the_checkpoint_model(reference_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from bert_jax.interop.onnx_runtime import OnnxEncoder

    out = tmp_path / "onnx"
    assert export.main(["--workdir", str(reference_run), "--format", "onnx", "--output", str(out)]) == 0
    assert "batch 1 x sequence 64: max abs diff logits" in capsys.readouterr().err  # the run's position table
    model, _, _, _ = export.load_from_workdir(str(reference_run))
    assert (out / "vocab.txt").is_file() and (out / "config.json").is_file()
    ids = np.random.default_rng(0).integers(5, model.config.vocab_size, size=(2, 20)).astype(np.int32)
    mask, types = np.ones_like(ids), np.zeros_like(ids)
    mask[1, 12:] = 0
    expected = np.asarray(model(ids, mask, types)["mlm_logits"])
    np.testing.assert_allclose(OnnxEncoder.from_directory(out)(ids, mask, types)["logits"], expected, atol=1e-4, rtol=0)


def test_phase_plan_and_config_errors(sample_dataset, tmp_path, capsys):
    config = _config(sample_dataset, train_steps=1000, phases="[{'max_seq_length': 32, 'fraction': 0.9, "
                     "'max_predictions': 5}, {'max_seq_length': 64, 'fraction': 0.1, 'max_predictions': 10}]")
    plan = phases.phase_plan(config)
    assert [(p.start, p.end, p.max_seq_length) for p in plan] == [(0, 900, 32), (900, 1000, 64)]
    assert phases.phase_at(plan, 899).index == 0 and phases.phase_at(plan, 900).index == 1
    assert phases.phase_at(plan, 1000) is None

    from bert_jax import train

    assert train.main(["--workdir", str(tmp_path), "--config.optimizer.learning_rte=1"]) == 2
    assert "did you mean optimizer.learning_rate" in capsys.readouterr().err
    missing = _config(sample_dataset, **{"data.dir": str(tmp_path / "absent")})
    with pytest.raises(errors.InputError, match="python -m bert_jax.data.build"):
        trainer.run(missing, str(tmp_path / "w"))
