"""A run, top to bottom: setup (mesh, objective, model, optimizer, sharded state, jitted steps) -> state (fresh or
restored) -> data -> loop (phases, eval, log, checkpoint, preemption, non-finite guard) -> export.

Resume precedence: the latest complete checkpoint in WORKDIR/checkpoints, else a fresh initialisation from
`config.seed` (or from the trained model the objective starts from: `config.init_from`, evaluated at step 0). The
phase is a function of the step, so a run resumes in either phase; each checkpoint holds the data iterator of the
phase its step belongs to (the boundary checkpoint is written after the switch).

Exactness: dropout keys are `fold_in(seed, step)`, batches a function of (seed, epoch, record) and the iterator
position is checkpointed, so a resumed run reproduces an uninterrupted one bit for bit on the same mesh.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from bert_jax.errors import TrainingError
from bert_jax.training import (checkpointing, chip_peaks, compiled_steps, flops, inputs, integrity, metrics, resume,
                               run_summary, setup as setup_lib)
from bert_jax.training.best import BestParams
from bert_jax.training.phases import Phase, phase_at, phase_plan
from bert_jax.training.workdir import WorkdirLock

log = logging.getLogger("bert_jax")


@dataclasses.dataclass
class RunResult:
    status: str  # "finished" or "preempted"
    step: int
    last_eval: dict[str, Any] | None = None
    summary: run_summary.RunSummary | None = None  # None when the run had already finished


class Profiler:
    """A jax.profiler trace of `profile_steps` steps from `profile_start_step` into WORKDIR/profile (TensorBoard)."""

    def __init__(self, config, workdir: str) -> None:
        self.start, self.steps = config.profile_start_step, config.profile_steps
        self.directory = os.path.join(workdir, "profile")
        self.active = False

    def before_step(self, step: int) -> None:
        if self.steps <= 0:
            return
        if step == self.start and not self.active:
            jax.profiler.start_trace(self.directory)
            self.active = True
        elif step == self.start + self.steps and self.active:
            self.stop()
            log.info("profile of steps %d-%d written to %s", self.start, step - 1, self.directory)

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False


def _peak_flops(config, run: setup_lib.Setup) -> float:
    """FLOP/s of the whole mesh, for MFU: configured per device, else the chip's published bf16 peak on TPU and GPU
    (comparable with MaxText's MFU), else (CPU) measured on device 0 (fastest of three matmul bursts)."""
    devices = list(run.mesh.devices.flat)
    per_device = config.peak_flops_per_device
    source = "config.peak_flops_per_device"
    if not per_device:
        published = chip_peaks.published_peak_flops(devices[0].platform, devices[0].device_kind)
        if published is not None:
            per_device, source = published
        else:
            per_device = flops.measure_peak_flops(config.model.dtype, jax.local_devices()[0])
            source = f"a {config.model.dtype} matmul measured on {devices[0].device_kind}"
    log.info("MFU denominator: %.4g FLOP/s per device (%s)", per_device, source)
    return per_device * flops.peak_ways(devices)


def run(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
    started = time.perf_counter()
    is_chief = jax.process_index() == 0
    plan = phase_plan(config)
    run_setup = setup_lib.build(config)
    mesh = run_setup.mesh
    log.info("mesh %s over %d devices (%d processes, platform %s); objective %s", dict(mesh.shape),
             jax.device_count(), jax.process_count(), jax.devices()[0].platform, run_setup.objective.name)
    if run_setup.frozen is not None:
        log.info("frozen model (not trained, not checkpointed): %s, parameter hash %s",
                 run_setup.frozen.description, run_setup.frozen.fingerprint[:12])
    lock = WorkdirLock(workdir).acquire() if is_chief else None
    try:
        return _run(config, workdir, run_setup, plan, is_chief, lock, started)
    except Exception as error:  # noqa: BLE001 - a write (ours or orbax's) that lost the race with the deletion
        if lock is not None and lock.deleted():  # `check_present` looks for every step
            raise lock.deleted_error() from error
        raise
    finally:
        if lock is not None:
            lock.release()


def _run(config, workdir: str, run_setup: setup_lib.Setup, plan, is_chief: bool,
         lock: WorkdirLock | None, started: float) -> RunResult:
    mesh = run_setup.mesh
    run_summary.announce(config, run_setup, workdir, is_chief)
    manager = checkpointing.make_manager(workdir, keep=config.keep_checkpoints)
    writer = metrics.MetricsWriter(workdir, total_steps=config.train_steps, enabled=is_chief,
                                   train_metrics=run_setup.objective.train_metrics)
    data = inputs.run_data(run_setup)
    data.ensure(plan)

    # State: the newest checkpoint that verifies, else fresh.
    state, step, phase, iterator = resume.start(run_setup, manager, plan, _frozen_fingerprint(run_setup),
                                                data.train_iterator)
    if step:
        writer.truncate_after(step)
    continues_from = run_setup.objective.continues_from()
    if step and continues_from:
        log.info("resumed at step %d: the model the run started from (%s) is not read again", step, continues_from)
    if step >= config.train_steps:
        log.info("the run in %s already finished at step %d; nothing to do", workdir, step)
        _export(config, workdir, run_setup, state.params, is_chief, step, None)
        return RunResult("finished", step)

    peak = _peak_flops(config, run_setup)
    watch = checkpointing.PreemptionWatch()
    interval_metrics = metrics.IntervalMetrics(run_setup.objective)
    profiler = Profiler(config, workdir)
    best = BestParams(run_setup, workdir, is_chief)
    last_eval = None
    first_step = step

    def summary(status: str, export: str | None) -> run_summary.RunSummary:
        result = run_summary.summarize(
            status=status, config=config, plan=plan, start_step=first_step, end_step=step,
            wall_s=time.perf_counter() - started,
            loop_s=time.perf_counter() - loop_started - (steps.compile_s - compiled_before),
            tokens_this_run=steps.tokens, flops_this_run=steps.flops, peak_flops=peak, final_eval=last_eval,
            checkpoints=manager.all_steps(), checkpoint_dir=str(manager.directory), export=export,
            chance=run_setup.objective.chance_levels(run_setup.model_config))
        run_summary.report(result, workdir, is_chief)
        return result

    if step == 0 and continues_from:  # the baseline: the trained model before this run changes it
        last_eval = {"step": 0, **data.evaluate(phase, state.params)}
        writer.write(0, last_eval)
    try:
        steps = compiled_steps.CompiledSteps(run_setup)
        steps.start_phase(phase)
        loop_started, compiled_before = time.perf_counter(), steps.compile_s
        interval = Interval(step, steps)
        previous_metrics = None
        while step < config.train_steps:
            profiler.before_step(step)
            state, step_metrics = steps(state, next(iterator))
            step += 1
            if lock is not None:
                lock.check_present()
            interval_metrics.add(step_metrics)
            # The previous step's streak is read while this one runs: the device never waits for the host.
            if previous_metrics is not None:
                _check_finite(config, previous_metrics, step - 1, manager)
            previous_metrics = step_metrics

            if step % config.log_every == 0 or step == phase.end:
                record = interval_metrics.read()
                record.update(interval.rates(step, config.batch_size, peak))
                record["phase"] = phase.index
                record["eta_s"] = _eta(plan, run_setup, step, phase, record["step_s"])
                writer.write(step, dict(kind="train", **record))
                interval = Interval(step, steps)

            if step % config.eval_every == 0 or step == phase.end:
                last_eval = {"step": step, **data.evaluate(phase, state.params)}  # the step for the summary and card
                writer.write(step, last_eval)
                best.offer(step, last_eval, state.params)
                interval = Interval(step, steps)

            boundary = step == phase.end and step < config.train_steps
            if boundary:
                phase = phase_at(plan, step)
                log.info("phase %d from step %d: sequence length %d, %d predictions", phase.index, step,
                         phase.max_seq_length, phase.max_predictions)
                iterator = data.train_iterator(phase)
                steps.start_phase(phase)
                interval = Interval(step, steps)

            _raise_save_failures(manager, step, run_setup)  # a background save that failed stops the run now
            if lock is not None:
                lock.check_present()
            preempted = watch.reached(step)
            if preempted or boundary or step % config.checkpoint_every == 0 or step == config.train_steps:
                _check_finite(config, step_metrics, step, manager)
                _save(manager, step, state, iterator,
                      checkpointing.run_metadata(config, mesh, phase, _frozen_fingerprint(run_setup)), run_setup)
                writer.flush()
            if preempted:
                _finish_saves(manager, step, run_setup)
                log.warning("%s received: saved the checkpoint at step %d in %s; exiting cleanly so the job can be "
                            "resumed (the same command resumes it)", watch.describe(), step, manager.directory)
                return RunResult("preempted", step, last_eval, summary("preempted", None))
        _finish_saves(manager, step, run_setup)
        export = _export(config, workdir, run_setup, state.params, is_chief, step, last_eval)
        log.info("finished %d steps", step)
        return RunResult("finished", step, last_eval, summary("finished", export))
    finally:
        failing = sys.exc_info()[1] is not None
        try:
            manager.wait_until_finished()
            manager.close()
        except Exception:  # noqa: BLE001 - a failed save was already reported (or is being raised) by _finish_saves
            log.debug("closing the checkpoint manager after a failure", exc_info=True)
        _close(writer.close, "the metrics writer", failing)
        watch.close()
        profiler.stop()


def _close(close, what: str, failing: bool) -> None:
    """Closes `what`; while the run is already stopping with an error, a failure to close (a full disk cannot take
    the last metrics either) is logged rather than raised, so the user sees the error that stopped the run."""
    try:
        close()
    except Exception as error:  # noqa: BLE001 - any write error; the run's own error is the one to report
        if not failing:
            raise
        log.warning("%s could not be closed after the run failed (%s: %s); its last records may be missing",
                    what, type(error).__name__, error)


def _save(manager, step: int, state, iterator, metadata: dict, run_setup: setup_lib.Setup) -> None:
    """Starts the checkpoint of `step` unless an earlier save failed, the state is not finite or the disk lacks room
    for it. The metadata carries the state's checksums, which a resume verifies (`integrity.py`)."""
    _raise_save_failures(manager, step, run_setup)
    summary = integrity.summarize(state)
    integrity.check_savable(summary, step)
    integrity.check_space(manager.directory, step, integrity.state_bytes(run_setup.abstract_state))
    _mapping_save_failures(manager, step, run_setup,
                           lambda: checkpointing.save(manager, step, state, iterator, {**metadata, **summary}))


def _mapping_save_failures(manager, step: int, run_setup: setup_lib.Setup, action) -> None:
    """Runs `action`; a failure of a save (now or in the background) becomes one line where it is a full disk or a
    vanished workdir (`integrity.save_failure`)."""
    try:
        action()
    except Exception as error:  # noqa: BLE001 - orbax and tensorstore raise many types for the same failures
        raise integrity.save_failure(error, manager.directory, step,
                                     integrity.state_bytes(run_setup.abstract_state)) from error


def _raise_save_failures(manager, step: int, run_setup: setup_lib.Setup) -> None:
    """An asynchronous save that failed in the background stops the run at the next step."""
    _mapping_save_failures(manager, step, run_setup, manager.check_for_errors)


def _finish_saves(manager, step: int, run_setup: setup_lib.Setup) -> None:
    _mapping_save_failures(manager, step, run_setup, manager.wait_until_finished)
    _raise_save_failures(manager, step, run_setup)


def _frozen_fingerprint(run_setup: setup_lib.Setup) -> str:
    return "" if run_setup.frozen is None else run_setup.frozen.fingerprint


class Interval:
    """The steps since the last log line: their tokens and FLOPs at the lengths they ran at, over the seconds they
    took without compilation."""

    def __init__(self, step: int, steps: compiled_steps.CompiledSteps) -> None:
        self.first_step, self.steps = step, steps
        self.started = time.perf_counter()
        self.tokens, self.flops, self.compile_s = steps.tokens, steps.flops, steps.compile_s

    def rates(self, step: int, batch_size: int, peak: float) -> dict[str, float]:
        elapsed = time.perf_counter() - self.started - (self.steps.compile_s - self.compile_s)
        elapsed = max(elapsed, 1e-9)
        count = max(step - self.first_step, 1)
        return {"tokens_per_s": (self.steps.tokens - self.tokens) / elapsed,
                "examples_per_s": batch_size * count / elapsed,
                "mfu": (self.steps.flops - self.flops) / elapsed / peak,
                "step_s": elapsed / count}


def _flops_per_step(run_setup: setup_lib.Setup, phase: Phase) -> float:
    """At the phase's full length (what the ETA prices a step at)."""
    return compiled_steps.flops_per_step(run_setup, run_setup.batch_shape(phase.max_seq_length,
                                                                           phase.max_predictions))


def _eta(plan, run_setup, step: int, phase: Phase, seconds_per_step: float) -> float:
    """Remaining steps of every phase, each priced at this phase's rate scaled by its FLOPs per step."""
    here = _flops_per_step(run_setup, phase)
    remaining = 0.0
    for other in plan:
        steps_left = max(other.end - max(step, other.start), 0)
        remaining += steps_left * seconds_per_step * _flops_per_step(run_setup, other) / here
    return remaining


def _check_finite(config, step_metrics, step: int, manager) -> None:
    streak = int(step_metrics["nonfinite_streak"])
    if streak and streak >= config.max_nonfinite_steps:
        latest = manager.latest_step()
        raise TrainingError(
            f"{streak} consecutive steps up to step {step} had a non-finite loss or gradient "
            f"(config.max_nonfinite_steps={config.max_nonfinite_steps}); parameters were left unchanged on each. "
            f"The last checkpoint is step {latest} in {manager.directory}. Lower optimizer.learning_rate, "
            "check the data, or use model.dtype=float32, then resume."
        )
    if streak:
        log.warning("step %d: non-finite loss or gradient; the update was skipped (%d in a row)", step, streak)


def _export(config, workdir: str, run_setup: setup_lib.Setup, params, is_chief: bool, step: int,
            last_eval: dict | None) -> str | None:
    """Writes WORKDIR/export, the Hugging Face directory of the final parameters (config.export_at_end), with a model
    card of the run (its last eval: `last_eval`, else metrics.jsonl's); returns its path."""
    if not config.export_at_end:
        return None
    from bert_jax.interop import hf, model_card

    host_params = checkpointing.replicated_host_copy(params)
    if not all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(host_params)):
        raise TrainingError("the final parameters hold non-finite values: nothing was exported; export an earlier "
                            f"checkpoint with python -m bert_jax.export --workdir {workdir} --step N")
    if is_chief:
        final_eval = last_eval or model_card.final_eval(os.path.join(workdir, metrics.METRICS_FILE), step)
        hf.export_to(run_setup.graphdef, host_params, workdir, vocab_file=config.data.vocab_file,
                     lowercase=config.data.lowercase, labels=run_setup.objective.export_labels(),
                     run=model_card.RunInfo(config, step, final_eval))
    inputs.sync("exported")
    return os.path.join(workdir, "export")
