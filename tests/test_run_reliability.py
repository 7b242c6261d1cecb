"""The trainer under faults and bad input: damaged checkpoints are set aside for the newest good one, a non-finite
state is never saved or exported, Ctrl-C saves and exits cleanly, a full disk stops with one line and the partial
checkpoint is cleaned up, one trainer per workdir, every split checked before the first step, and config values that
used to give tracebacks are errors naming the field."""

from __future__ import annotations

import errno
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import errors
from bert_jax.configuration import load_config
from bert_jax.data import build
from bert_jax.training import checkpointing, integrity, loop as trainer, setup
from bert_jax.training.workdir import WorkdirLock
from tests.conftest import SAMPLE
from tests.run_helpers import ONE_PHASE, REPO, environment, losses, overrides, records, train_command

STEPS = 6


def config(dataset, **fields):
    base = dict(phases=ONE_PHASE, train_steps=STEPS, checkpoint_every=3, eval_every=100, keep_checkpoints=5)
    return load_config("configs/base_cased.py:tiny", overrides(dataset, **{**base, **fields}))


@pytest.fixture(scope="module")
def finished_run(sample_dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reliable") / "run"
    assert trainer.run(config(sample_dataset), str(workdir)).status == "finished"
    return workdir


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _largest_array_file(step_dir: Path) -> Path:
    return max((p for p in (step_dir / "state").rglob("d/*") if p.is_file()), key=lambda p: p.stat().st_size)


def _resume_longer(dataset, workdir, caplog):
    with caplog.at_level(logging.WARNING, logger="bert_jax"):
        result = trainer.run(config(dataset, train_steps=STEPS + 3), str(workdir))
    assert result.status == "finished" and result.step == STEPS + 3
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("damage", ["truncated", "flipped", "no_metadata"])
def test_a_damaged_newest_checkpoint_is_set_aside_for_the_one_before(finished_run, sample_dataset, tmp_path, caplog,
                                                                      damage):
    workdir = _copy(finished_run, tmp_path)
    newest = workdir / "checkpoints" / str(STEPS)
    if damage == "truncated":
        target = _largest_array_file(newest)
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "flipped":
        target = _largest_array_file(newest)
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x10
        target.write_bytes(bytes(data))
    else:
        shutil.rmtree(newest / "metadata")
    messages = _resume_longer(sample_dataset, workdir, caplog)
    assert any(f"checkpoints/{STEPS} is damaged" in m and "trying the one before" in m for m in messages), messages
    assert (workdir / "checkpoints" / f"{STEPS}.damaged-0").is_dir()  # kept for inspection, not deleted
    resumed, original = losses(workdir), losses(finished_run)
    assert [resumed[s] for s in (4, 5, 6)] == [original[s] for s in (4, 5, 6)]  # redone from step 3, exactly


def test_every_checkpoint_damaged_stops_instead_of_starting_over(finished_run, sample_dataset, tmp_path):
    workdir = _copy(finished_run, tmp_path)
    for step in (3, STEPS):
        shutil.rmtree(workdir / "checkpoints" / str(step) / "metadata")
    with pytest.raises(errors.CheckpointError, match="no usable checkpoint") as error:
        trainer.run(config(sample_dataset), str(workdir))
    assert "step 6:" in str(error.value) and "step 3:" in str(error.value)


def test_export_refuses_parameters_that_differ_from_their_checksums(finished_run, tmp_path, capsys):
    import json

    from bert_jax import export

    workdir = _copy(finished_run, tmp_path)
    metadata_file = workdir / "checkpoints" / str(STEPS) / "metadata" / "metadata"
    metadata = json.loads(metadata_file.read_text())
    metadata["params_checksums"][0] ^= 1  # what a flipped bit in the first parameter array would give
    metadata_file.write_text(json.dumps(metadata))
    assert export.main(["--workdir", str(workdir), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"step {STEPS}" in error and "differ from their checksums" in error and "--step" in error, error
    assert not (tmp_path / "out").exists()
    assert export.main(["--workdir", str(workdir), "--step", "3", "--output", str(tmp_path / "out")]) == 0


def test_checksums_catch_a_changed_value_and_a_non_finite_state(sample_dataset):
    run = setup.build(config(sample_dataset))
    state = run.init_state()
    summary = integrity.summarize(state)
    assert summary["state_finite"] and len(summary["state_checksums"]) == len(jax.tree.leaves(state))
    integrity.verify(state, summary, "fresh state")  # its own checksums verify
    kernel = state.params["bert"]["layers"][0]["intermediate"]["kernel"]
    value = kernel.get_value()
    flipped = jax.lax.bitcast_convert_type(
        jax.lax.bitcast_convert_type(value, jnp.uint32).at[3, 7].set(
            jax.lax.bitcast_convert_type(value, jnp.uint32)[3, 7] ^ jnp.uint32(1)), jnp.float32)
    kernel.set_value(flipped)  # one bit of one element: a tiny, finite change
    with pytest.raises(integrity.CheckpointDamaged, match="1 of .* arrays differ"):
        integrity.verify(state, summary, "changed state")
    kernel.set_value(value.at[0, 0].set(jnp.nan))
    assert not integrity.summarize(state)["state_finite"]
    with pytest.raises(errors.TrainingError, match="non-finite values, so it was not saved"):
        integrity.check_savable(integrity.summarize(state), 7)
    with pytest.raises(errors.TrainingError, match="nothing was exported"):
        trainer._export(config(sample_dataset, export_at_end=True), "unused", run, state.params, True, 7, None)


def test_ctrl_c_saves_and_exits_cleanly_and_a_second_aborts(sample_dataset, tmp_path):
    workdir = tmp_path / "run"
    command = train_command(workdir, sample_dataset, phases=ONE_PHASE, train_steps=200, checkpoint_every=1000,
                            eval_every=1000)
    process = subprocess.Popen(command, cwd=REPO, env=environment(2), stderr=subprocess.PIPE, text=True)
    _wait_for_step(workdir, 3, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 0
    log = process.stderr.read()
    assert "Traceback" not in log and "interrupt (Ctrl-C" in log
    saved = checkpointing.make_manager(str(workdir), keep=3, read_only=True).latest_step()
    assert saved is not None and 3 <= saved < 200

    second = subprocess.Popen(command, cwd=REPO, env=environment(2), stderr=subprocess.PIPE, text=True)
    _wait_for_step(workdir, saved + 2, second)
    second.send_signal(signal.SIGINT)
    time.sleep(0.05)
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=120) in (0, 130)  # 0 when the save beat the second Ctrl-C
    assert "Traceback" not in second.stderr.read()


def test_a_workdir_deleted_mid_run_stops_with_one_line_and_is_not_recreated(sample_dataset, tmp_path):
    workdir = tmp_path / "run"
    command = train_command(workdir, sample_dataset, phases=ONE_PHASE, train_steps=5000, checkpoint_every=10000,
                            eval_every=10000)
    process = subprocess.Popen(command, cwd=REPO, env=environment(1), stderr=subprocess.PIPE, text=True)
    _wait_for_step(workdir, 3, process)
    shutil.rmtree(workdir)
    assert process.wait(timeout=120) == 1
    last = process.stderr.read().strip().splitlines()[-1]
    assert "was deleted while the run was going" in last and str(workdir) in last, last
    assert not workdir.exists()  # nothing written into a recreated directory


def test_a_clock_jump_changes_nothing(finished_run, sample_dataset, tmp_path, monkeypatch):
    """Durations come from monotonic clocks: the wall clock jumping back an hour every few reads (NTP, a VM
    migration) leaves the losses, rates, ETA and checkpoints as they were."""
    real_time, calls = time.time, iter(range(10**9))
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600 * (next(calls) // 20))
    workdir = tmp_path / "run"
    assert trainer.run(config(sample_dataset), str(workdir)).status == "finished"
    assert losses(workdir) == losses(finished_run)
    assert all(r["tokens_per_s"] > 0 and r["eta_s"] >= 0 for r in records(workdir).values())
    assert checkpointing.make_manager(str(workdir), keep=5, read_only=True).all_steps() == [3, 6]


def _wait_for_step(workdir, step, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if max(records(workdir), default=0) >= step:
            return
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}): {process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached")


def test_a_full_disk_stops_with_one_line_and_the_partial_checkpoint_is_cleaned(sample_dataset, tmp_path, monkeypatch,
                                                                                caplog):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root): the mapping is covered by the test below")
    try:
        # Checked before the save starts: one line at the step that would fail, no orbax tracebacks.
        workdir = mount / "run"
        command = train_command(workdir, sample_dataset, phases=ONE_PHASE, train_steps=6, checkpoint_every=3,
                                eval_every=100)
        result = subprocess.run(command, cwd=REPO, env=environment(1), capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert "checkpoint of step 3" in last and "the disk is full" in last and str(workdir) in last, last
        assert "MiB free" in last and "needs about" in last, last
        assert "Traceback" not in result.stderr
        # Without that check the disk fills during orbax's background write: the run still stops at the next step
        # with the failed checkpoint's step, at the latest at the next save (orbax finishes one save before the
        # next), not at the end and not with RESOURCE_EXHAUSTED.
        monkeypatch.setattr(integrity, "check_space", lambda *args: None)
        with caplog.at_level(logging.INFO, logger="bert_jax"), \
                pytest.raises(errors.TrainingError, match=r"checkpoint of step 3 .* the disk is full") as stopped:
            trainer.run(config(sample_dataset, train_steps=12), str(workdir))
        assert "RESOURCE_EXHAUSTED" not in str(stopped.value)
        assert not [r for r in caplog.records if r.getMessage().startswith("step 7/")]
        assert any(p.name.endswith("orbax-checkpoint-tmp") for p in (workdir / "checkpoints").iterdir())
        # With space again the same run resumes and the partial checkpoint is gone.
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        assert trainer.run(config(sample_dataset, train_steps=12), str(workdir)).status == "finished"
        assert not [p for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_the_error_that_stopped_the_run_is_the_one_raised_when_the_metrics_cannot_be_flushed_either(
        sample_dataset, tmp_path, monkeypatch, caplog):
    # On a full disk the metrics writer's last flush fails too; it must not replace the one-line disk-full error.
    def disk_full(directory, step, approx_bytes):
        raise integrity.save_failure(OSError(errno.ENOSPC, "No space left on device"), directory, step, approx_bytes)

    def close_on_full_disk(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(integrity, "check_space", disk_full)
    monkeypatch.setattr(trainer.metrics.MetricsWriter, "close", close_on_full_disk)
    with caplog.at_level(logging.WARNING, logger="bert_jax"), \
            pytest.raises(errors.TrainingError, match="checkpoint of step 3 .* the disk is full"):
        trainer.run(config(sample_dataset), str(tmp_path / "run"))
    assert any("metrics writer could not be closed" in r.getMessage() for r in caplog.records)
    # Without an error in flight a failed close is not hidden.
    with pytest.raises(OSError, match="No space left"):
        trainer._close(lambda: close_on_full_disk(None), "the metrics writer", failing=False)


def test_save_failures_become_one_line(tmp_path):
    full = integrity.save_failure(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "checkpoints", 9,
                                  3 * 2**20)
    assert isinstance(full, errors.TrainingError) and "disk is full" in str(full) and "3.0 MiB" in str(full)
    gone = integrity.save_failure(RuntimeError("write failed"), tmp_path / "deleted" / "checkpoints", 9, 0)
    assert isinstance(gone, errors.TrainingError) and "no longer exists" in str(gone)
    background = integrity.save_failure(
        ValueError('RESOURCE_EXHAUSTED: writing "/w/checkpoints/3.orbax-checkpoint-tmp/state/d/1": No space left'),
        tmp_path / "checkpoints", 6, 0)
    assert "checkpoint of step 3" in str(background)  # the failed save's step, not the step that found it
    other = ValueError("something else")
    assert integrity.save_failure(other, tmp_path / "checkpoints", 9, 0) is other


def test_one_trainer_per_workdir(sample_dataset, tmp_path):
    workdir = tmp_path / "run"
    lock = WorkdirLock(str(workdir)).acquire()
    try:
        with pytest.raises(errors.InputError, match="another trainer .* is running in"):
            trainer.run(config(sample_dataset), str(workdir))
    finally:
        lock.release()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(errors.InputError, match="is a file, not a directory"):
        trainer.run(config(sample_dataset), str(tmp_path / "a_file"))


def test_an_empty_eval_split_is_refused_before_the_first_step(tmp_path):
    data = tmp_path / "no_eval"
    build.build(build.BuildConfig(inputs=(str(SAMPLE / "corpus-03.txt"),),
                                  vocab=str(SAMPLE / "vocab/vocab.txt"), lowercase=False,
                                  max_seq_lengths=(32,), eval_fraction=0.0, dupe_factor=1), str(data))
    with pytest.raises(errors.InputError, match=r"eval split of .*seq_32 holds 0 examples"):
        trainer.run(config(data), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no step was run


@pytest.mark.parametrize("fields,message", [
    ({"phases": "[{'max_seq_length': 32, 'fraction': 1.0}]"}, r"phases\[0\] lacks \['max_predictions'\]"),
    ({"phases": "[{'max_seq_length': '32', 'fraction': 1.0, 'max_predictions': 5}]"},
     r"phases\[0\].max_seq_length must be int"),
    ({"optimizer.grad_accum_steps": 0}, "optimizer.grad_accum_steps must be at least 1"),
    ({"optimizer.name": "sgd"}, "optimizer.name 'sgd' is not supported"),
    ({"data.masked_lm_prob": 0.0}, r"data.masked_lm_prob must be in \(0, 1\]"),
    ({"data.worker_count": -1}, "data.worker_count must be 0"),
    ({"model.num_hidden_layers": 0}, "num_hidden_layers"),
    ({"model.hidden_dropout_prob": 1.0}, "hidden_dropout_prob"),
    ({"model.intermediate_size": -4}, "intermediate_size"),
])
def test_config_values_that_gave_tracebacks_name_the_field(sample_dataset, fields, message):
    with pytest.raises(errors.ConfigError, match=message):
        config(sample_dataset, **fields)


@pytest.mark.parametrize("fields,message", [
    ({"batch_size": 12}, r"batch_size 12 must be divisible by the data-parallel ways \(16"),
    ({"batch_size": 32, "optimizer.grad_accum_steps": 3}, r"times optimizer.grad_accum_steps \(3\)"),
])
def test_batch_splits_are_checked_before_any_work(sample_dataset, fields, message):
    with pytest.raises(errors.ConfigError, match=message):
        setup.build(config(sample_dataset, **fields))
