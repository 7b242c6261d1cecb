"""A run, top to bottom: setup (mesh, objective, model, optimizer, sharded state, jitted steps) -> state (fresh or
restored) -> data -> loop (phases, eval, log, checkpoint, preemption, non-finite guard) -> export.

Resume precedence: the latest complete checkpoint in WORKDIR/checkpoints, else a fresh initialisation from
`config.seed`. The phase is a function of the step, so a run resumes in either phase; each checkpoint holds the data
iterator of the phase its step belongs to (the boundary checkpoint is written after the switch).

Exactness: dropout keys are `fold_in(seed, step)`, batches a function of (seed, epoch, record) and the iterator
position is checkpointed, so a resumed run reproduces an uninterrupted one bit for bit on the same mesh.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import jax
import ml_collections

from bert_jax.errors import TrainingError
from bert_jax.training import checkpointing, flops, inputs, metrics, setup as setup_lib
from bert_jax.training.best import BestParams
from bert_jax.training.phases import Phase, phase_at, phase_plan

log = logging.getLogger("bert_jax")


@dataclasses.dataclass
class RunResult:
    status: str  # "finished" or "preempted"
    step: int
    last_eval: dict[str, Any] | None = None


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
    """FLOP/s of the whole mesh, for MFU: configured per device, else measured on device 0 (fastest of three matmul
    bursts)."""
    devices = list(run.mesh.devices.flat)
    per_device = config.peak_flops_per_device or flops.measure_peak_flops(config.model.dtype, jax.local_devices()[0])
    return per_device * flops.peak_ways(devices)


def run(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
    is_chief = jax.process_index() == 0
    plan = phase_plan(config)
    run_setup = setup_lib.build(config)
    mesh = run_setup.mesh
    log.info("mesh %s over %d devices (%d processes, platform %s); objective %s", dict(mesh.shape),
             jax.device_count(), jax.process_count(), jax.devices()[0].platform, run_setup.objective.name)
    if run_setup.frozen is not None:
        log.info("frozen model (not trained, not checkpointed): %s, parameter hash %s",
                 run_setup.frozen.description, run_setup.frozen.fingerprint[:12])
    manager = checkpointing.make_manager(workdir, keep=config.keep_checkpoints)
    writer = metrics.MetricsWriter(workdir, total_steps=config.train_steps, enabled=is_chief,
                                   train_metrics=run_setup.objective.train_metrics)
    data = inputs.run_data(run_setup)
    data.ensure(plan)

    # State: the latest checkpoint if there is one, else fresh.
    latest = manager.latest_step()
    step = 0 if latest is None else latest
    phase = phase_at(plan, step) or plan[-1]
    iterator = data.train_iterator(phase)
    if latest is None:
        state = run_setup.init_state()
    else:
        saved = checkpointing.read_metadata(manager, latest)
        checkpointing.check_compatible(config, saved, mesh, latest, _frozen_fingerprint(run_setup))
        same_data = saved.get("max_seq_length") == phase.max_seq_length
        if not same_data:
            log.warning("the checkpoint at step %d was in a phase of sequence length %s, but with this config step "
                        "%d is in phase %d (length %d): its data position does not apply, phase %d's data starts "
                        "from its beginning", latest, saved.get("max_seq_length"), latest, phase.index,
                        phase.max_seq_length, phase.index)
        state, _ = checkpointing.restore(manager, latest, run_setup.abstract_state, run_setup.shardings,
                                         iterator if same_data else None)
        writer.truncate_after(latest)
        log.info("resumed from %s at step %d (phase %d)", manager.directory / str(latest), latest, phase.index)
    if step >= config.train_steps:
        log.info("the run in %s already finished at step %d; nothing to do", workdir, step)
        _export(config, workdir, run_setup, state.params, is_chief)
        return RunResult("finished", step)

    peak = _peak_flops(config, run_setup)
    watch = checkpointing.PreemptionWatch()
    interval = metrics.IntervalMetrics(run_setup.objective)
    profiler = Profiler(config, workdir)
    best = BestParams(run_setup, workdir, is_chief)
    last_eval = None
    try:
        compiled = _compile(run_setup, phase)
        interval_start, interval_first_step = time.perf_counter(), step
        previous_metrics = None
        while step < config.train_steps:
            profiler.before_step(step)
            state, step_metrics = compiled(state, run_setup.global_batch(next(iterator)), *run_setup.frozen_args)
            step += 1
            interval.add(step_metrics)
            # The previous step's streak is read while this one runs: the device never waits for the host.
            if previous_metrics is not None:
                _check_finite(config, previous_metrics, step - 1, manager)
            previous_metrics = step_metrics

            if step % config.log_every == 0 or step == phase.end:
                record = interval.read()
                elapsed = time.perf_counter() - interval_start
                seconds_per_step = elapsed / max(step - interval_first_step, 1)
                tokens_per_step = config.batch_size * phase.max_seq_length
                record["tokens_per_s"] = tokens_per_step / seconds_per_step
                record["mfu"] = _flops_per_step(run_setup, phase) / seconds_per_step / peak
                record["step_s"] = seconds_per_step
                record["phase"] = phase.index
                record["eta_s"] = _eta(plan, run_setup, step, phase, seconds_per_step)
                writer.write(step, dict(kind="train", **record))
                interval_start, interval_first_step = time.perf_counter(), step

            if step % config.eval_every == 0 or step == phase.end:
                last_eval = data.evaluate(phase, state.params)
                writer.write(step, last_eval)
                best.offer(step, last_eval, state.params)
                interval_start, interval_first_step = time.perf_counter(), step

            boundary = step == phase.end and step < config.train_steps
            if boundary:
                phase = phase_at(plan, step)
                log.info("phase %d from step %d: sequence length %d, %d predictions", phase.index, step,
                         phase.max_seq_length, phase.max_predictions)
                iterator = data.train_iterator(phase)
                compiled = _compile(run_setup, phase)
                interval_start, interval_first_step = time.perf_counter(), step

            preempted = watch.reached(step)
            if preempted or boundary or step % config.checkpoint_every == 0 or step == config.train_steps:
                _check_finite(config, step_metrics, step, manager)
                checkpointing.save(manager, step, state, iterator,
                                   checkpointing.run_metadata(config, mesh, phase, _frozen_fingerprint(run_setup)))
                writer.flush()
            if preempted:
                manager.wait_until_finished()
                log.warning("preemption notice (SIGTERM) received: saved the checkpoint at step %d in %s; exiting "
                            "cleanly so the job can be resumed", step, manager.directory)
                return RunResult("preempted", step, last_eval)
        manager.wait_until_finished()
        _export(config, workdir, run_setup, state.params, is_chief)
        log.info("finished %d steps", step)
        return RunResult("finished", step, last_eval)
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        watch.close()
        profiler.stop()


def _frozen_fingerprint(run_setup: setup_lib.Setup) -> str:
    return "" if run_setup.frozen is None else run_setup.frozen.fingerprint


def _compile(run_setup: setup_lib.Setup, phase: Phase):
    """Compiles the step for the phase's shapes ahead of the first batch: the log shows compile time and memory."""
    batch = run_setup.abstract_batch(run_setup.batch_shape(phase.max_seq_length, phase.max_predictions))
    start = time.perf_counter()
    compiled = run_setup.train_step.lower(run_setup.abstract_state, batch, *run_setup.frozen_args).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    per_device = ""
    if memory is not None:
        total = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
                 - memory.alias_size_in_bytes)
        per_device = f", {total / 2**20:.1f} MiB per device"
    log.info("compiled the train step for sequence length %d in %.1f s%s", phase.max_seq_length, seconds, per_device)
    return compiled


def _flops_per_step(run_setup: setup_lib.Setup, phase: Phase) -> float:
    shape = run_setup.batch_shape(phase.max_seq_length, phase.max_predictions)
    return run_setup.flops_per_token(shape) * shape.batch_size * shape.seq_len


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


def _export(config, workdir: str, run_setup: setup_lib.Setup, params, is_chief: bool) -> None:
    """Writes WORKDIR/export, the Hugging Face directory of the final parameters (config.export_at_end)."""
    if not config.export_at_end:
        return
    from bert_jax.interop import hf

    host_params = checkpointing.replicated_host_copy(params)
    if is_chief:
        hf.export_to(run_setup.graphdef, host_params, workdir, vocab_file=config.data.vocab_file,
                     lowercase=config.data.lowercase, labels=run_setup.objective.export_labels())
    inputs.sync("exported")
