"""Pre-training, top to bottom: mesh -> state (fresh or restored) -> data -> loop (phases, eval, log, checkpoint,
preemption, non-finite guard) -> export.

Resume precedence: the latest complete checkpoint in WORKDIR/checkpoints, else a fresh initialisation from
`config.seed`. The phase is a function of the step, so a run resumes in either phase; each checkpoint holds the data
iterator of the phase its step belongs to (the boundary checkpoint is written after the switch).

Exactness: dropout keys are `fold_in(seed, step)`, batches a function of (seed, epoch, record) and the iterator
position is checkpointed, so a resumed run reproduces an uninterrupted one bit for bit on the same mesh.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from bert_jax import checkpointing, flops, metrics, optim, sharding, steps
from bert_jax.configuration import model_config
from bert_jax.data import pipeline
from bert_jax.data.masking import MaskingConfig, VocabInfo
from bert_jax.data.sources import InputError

log = logging.getLogger("bert_jax")


class TrainingError(RuntimeError):
    """The run cannot go on (diverged, inconsistent data); the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Phase:
    index: int
    start: int  # first step of the phase
    end: int  # one past its last step
    max_seq_length: int
    max_predictions: int


@dataclasses.dataclass
class RunResult:
    status: str  # "finished" or "preempted"
    step: int
    last_eval: dict[str, Any] | None = None


def phase_plan(config: ml_collections.ConfigDict) -> list[Phase]:
    """Splits `train_steps` by each phase's `fraction` (rounded; the last phase ends at train_steps)."""
    plan, start, cumulative = [], 0, 0.0
    for index, phase in enumerate(config.phases):
        cumulative += phase.fraction
        end = config.train_steps if index == len(config.phases) - 1 else round(cumulative * config.train_steps)
        if end > start:
            plan.append(Phase(index, start, end, phase.max_seq_length, phase.max_predictions))
        start = end
    return plan


def phase_at(plan: list[Phase], step: int) -> Phase | None:
    return next((phase for phase in plan if phase.start <= step < phase.end), None)


def ensure_data(config: ml_collections.ConfigDict, plan: list[Phase]) -> None:
    """Builds the dataset from `data.build_from` when it is missing (the tiny demo); process 0 builds, all wait."""
    lengths = sorted({phase.max_seq_length for phase in plan})
    missing = [n for n in lengths if not os.path.isdir(os.path.join(config.data.dir, f"seq_{n}"))]
    if missing and config.data.build_from:
        if jax.process_index() == 0:
            from bert_jax.data import build

            log.info("building %s from %s (sequence lengths %s)", config.data.dir, config.data.build_from, lengths)
            argv = ["--input", config.data.build_from, "--vocab", config.data.vocab_file, "--output",
                    config.data.dir, "--max_seq_length", ",".join(map(str, lengths)),
                    "--lowercase" if config.data.lowercase else "--cased"]
            if build.main(argv) != 0:
                raise InputError(f"building {config.data.dir} from {config.data.build_from} failed (see above)")
        _sync("data built")
    for length in lengths:  # a missing or incomplete dataset fails here, with the command that builds it
        pipeline.shard_paths(config.data.dir, max_seq_length=length, split="train")
    vocab_size = VocabInfo.from_vocab_file(os.path.join(config.data.dir, "vocab.txt")).vocab_size
    if vocab_size > config.model.vocab_size:
        raise InputError(
            f"{config.data.dir}/vocab.txt has {vocab_size} tokens but model.vocab_size is {config.model.vocab_size}: "
            f"set --config.model.vocab_size={vocab_size}"
        )


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _seed32(config) -> int:
    return int(config.seed) % 2**32


def _masking(config, phase: Phase) -> MaskingConfig:
    return MaskingConfig(
        max_predictions=phase.max_predictions,
        masked_lm_prob=config.data.masked_lm_prob,
        whole_word=config.data.whole_word_masking,
        static=config.data.static_masking,
    )


def train_iterator(config, phase: Phase):
    loader = pipeline.make_loader(
        config.data.dir, max_seq_length=phase.max_seq_length, split="train", global_batch_size=config.batch_size,
        max_predictions=phase.max_predictions, seed=_seed32(config), worker_count=config.data.worker_count,
        masking=_masking(config, phase),
    )
    return iter(loader)


def evaluate(config, phase: Phase, eval_fn, params, mesh) -> dict[str, Any]:
    """MLM and NSP loss/accuracy on the held-out split (the first `eval_steps` batches, the same every time)."""
    loader = pipeline.make_loader(
        config.data.dir, max_seq_length=phase.max_seq_length, split="eval", global_batch_size=config.batch_size,
        max_predictions=phase.max_predictions, seed=_seed32(config), masking=_masking(config, phase),
        num_epochs=1, shuffle=False, drop_remainder=False,
    )
    totals = None
    for index, host_batch in enumerate(loader):
        if 0 < config.eval_steps <= index:
            break
        sums = eval_fn(params, sharding.global_batch(host_batch, mesh))
        totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    totals = {name: float(value) for name, value in jax.device_get(totals).items()}
    return dict(kind="eval", max_seq_length=phase.max_seq_length, examples=int(totals["nsp_count"]),
                **metrics.summarize_sums(totals))


def _peak_flops(config) -> float:
    """FLOP/s of the whole slice, for MFU: configured per device, else measured on device 0 (fastest of three matmul bursts)."""
    device = jax.local_devices()[0]
    per_device = config.peak_flops_per_device or flops.measure_peak_flops(config.model.dtype, device)
    if device.platform == "cpu":
        # Emulated CPU devices share the host's cores: the matmul already used all of them.
        return per_device * jax.process_count()
    return per_device * jax.device_count()


def _check_resume_config(config, saved: dict[str, Any], mesh, step: int) -> None:
    saved_model = {k: v for k, v in saved["config"]["model"].items() if k not in ("dtype",)}
    current_model = {k: v for k, v in config.model.to_dict().items() if k not in ("dtype",)}
    changed = sorted(k for k in current_model if saved_model.get(k) != current_model[k])
    if changed:
        raise checkpointing.CheckpointError(
            f"the checkpoint at step {step} was trained with a different model (fields {changed}: "
            f"{ {k: saved_model.get(k) for k in changed} }); use its config or a new --workdir"
        )
    if saved.get("process_count", 1) != jax.process_count():
        raise checkpointing.CheckpointError(
            f"the checkpoint at step {step} was written by {saved['process_count']} processes and this run has "
            f"{jax.process_count()}: each host's data position cannot be carried over; run with "
            f"{saved['process_count']} hosts (any mesh over them works)"
        )
    if saved["config"]["data"].get("worker_count") != config.data.worker_count:
        raise checkpointing.CheckpointError(
            f"the checkpoint at step {step} was written with data.worker_count={saved['config']['data'].get('worker_count')}"
            f" and this run has {config.data.worker_count}: the data iterator's position is kept per worker; pass "
            f"--config.data.worker_count={saved['config']['data'].get('worker_count')}"
        )
    if saved["mesh"] != {name: int(size) for name, size in mesh.shape.items()}:
        log.info("restoring a checkpoint written on mesh %s onto mesh %s", saved["mesh"], dict(mesh.shape))
    current = json.loads(config.to_json_best_effort())
    for key in ("batch_size", "train_steps", "seed", "phases", "optimizer"):
        if saved["config"].get(key) != current.get(key):
            log.warning("config.%s differs from the checkpoint's (%s -> %s); resuming anyway",
                        key, saved["config"].get(key), current.get(key))


def run(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
    is_chief = jax.process_index() == 0
    plan = phase_plan(config)
    mesh = sharding.make_mesh(config.mesh)
    log.info("mesh %s over %d devices (%d processes, platform %s)", dict(mesh.shape), jax.device_count(),
             jax.process_count(), jax.devices()[0].platform)

    # State: fresh, then replaced by the latest checkpoint if there is one.
    model = model_config(config)
    optimizer = optim.make_optimizer(config.optimizer, config.train_steps)
    schedule = optim.learning_rate_schedule(config.optimizer, config.train_steps)
    graphdef, state, shardings = sharding.init_sharded_state(model, optimizer, mesh, config.seed)
    train_fn = steps.jit_train_step(
        graphdef=graphdef, optimizer=optimizer, schedule=schedule, seed=config.seed,
        grad_accum_steps=config.optimizer.grad_accum_steps, state_shardings=shardings, mesh=mesh,
    )
    eval_fn = steps.jit_eval_step(graphdef=graphdef, param_shardings=shardings.params, mesh=mesh)
    manager = checkpointing.make_manager(workdir, keep=config.keep_checkpoints)
    writer = metrics.MetricsWriter(workdir, total_steps=config.train_steps, enabled=is_chief)
    ensure_data(config, plan)

    latest = manager.latest_step()
    step = 0 if latest is None else latest
    phase = phase_at(plan, step) or plan[-1]
    iterator = train_iterator(config, phase)
    if latest is not None:
        saved = checkpointing.read_metadata(manager, latest)
        _check_resume_config(config, saved, mesh, latest)
        same_data = saved.get("max_seq_length") == phase.max_seq_length
        if not same_data:
            log.warning("the checkpoint at step %d was in a phase of sequence length %s, but with this config step "
                        "%d is in phase %d (length %d): its data position does not apply, phase %d's data starts "
                        "from its beginning", latest, saved.get("max_seq_length"), latest, phase.index,
                        phase.max_seq_length, phase.index)
        state, _ = checkpointing.restore(manager, latest, state, shardings, iterator if same_data else None)
        writer.truncate_after(latest)
        log.info("resumed from %s at step %d (phase %d)", manager.directory / str(latest), latest, phase.index)
    if step >= config.train_steps:
        log.info("the run in %s already finished at step %d; nothing to do", workdir, step)
        _export(config, workdir, state.params, graphdef, is_chief)
        return RunResult("finished", step)

    peak = _peak_flops(config)
    watch = checkpointing.PreemptionWatch()
    interval = metrics.IntervalMetrics()
    last_eval = None
    try:
        compiled, step_seconds_estimate = _compile(train_fn, state, config, phase, mesh)
        interval_start, interval_first_step = time.perf_counter(), step
        previous_metrics = None
        while step < config.train_steps:
            _maybe_profile(config, workdir, step)
            state, step_metrics = compiled(state, sharding.global_batch(next(iterator), mesh))
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
                record["mfu"] = _flops_per_step(model, config, phase) * record["tokens_per_s"] / \
                    tokens_per_step / peak
                record["step_s"] = seconds_per_step
                record["phase"] = phase.index
                record["eta_s"] = _eta(plan, model, config, step, phase, seconds_per_step)
                writer.write(step, dict(kind="train", **record))
                interval_start, interval_first_step = time.perf_counter(), step

            if step % config.eval_every == 0 or step == phase.end:
                last_eval = evaluate(config, phase, eval_fn, state.params, mesh)
                writer.write(step, last_eval)
                interval_start, interval_first_step = time.perf_counter(), step

            boundary = step == phase.end and step < config.train_steps
            if boundary:
                phase = phase_at(plan, step)
                log.info("phase %d from step %d: sequence length %d, %d predictions", phase.index, step,
                         phase.max_seq_length, phase.max_predictions)
                iterator = train_iterator(config, phase)
                compiled, _ = _compile(train_fn, state, config, phase, mesh)
                interval_start, interval_first_step = time.perf_counter(), step

            preempted = watch.reached(step)
            if preempted or boundary or step % config.checkpoint_every == 0 or step == config.train_steps:
                _check_finite(config, step_metrics, step, manager)
                checkpointing.save(manager, step, state, iterator, checkpointing.run_metadata(config, mesh, phase))
                writer.flush()
            if preempted:
                manager.wait_until_finished()
                log.warning("preemption notice (SIGTERM) received: saved the checkpoint at step %d in %s; exiting "
                            "cleanly so the job can be resumed", step, manager.directory)
                return RunResult("preempted", step, last_eval)
        manager.wait_until_finished()
        _export(config, workdir, state.params, graphdef, is_chief)
        log.info("finished %d steps", step)
        return RunResult("finished", step, last_eval)
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        watch.close()
        if _profiling["active"]:
            jax.profiler.stop_trace()
            _profiling["active"] = False


def _compile(train_fn, state, config, phase: Phase, mesh):
    """Compiles the step for the phase's shapes ahead of the first batch: the log shows compile time and memory."""
    batch = sharding.abstract_batch(config.batch_size, phase.max_seq_length, phase.max_predictions, mesh)
    start = time.perf_counter()
    compiled = train_fn.lower(state, batch).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    per_device = ""
    if memory is not None:
        total = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
                 - memory.alias_size_in_bytes)
        per_device = f", {total / 2**20:.1f} MiB per device"
    log.info("compiled the train step for sequence length %d in %.1f s%s", phase.max_seq_length, seconds, per_device)
    return compiled, seconds


def _flops_per_step(model, config, phase: Phase) -> float:
    tokens = config.batch_size * phase.max_seq_length
    return flops.flops_per_token(model, phase.max_seq_length, phase.max_predictions) * tokens


def _eta(plan, model, config, step: int, phase: Phase, seconds_per_step: float) -> float:
    """Remaining steps of every phase, each priced at this phase's rate scaled by its FLOPs per step."""
    here = _flops_per_step(model, config, phase)
    remaining = 0.0
    for other in plan:
        steps_left = max(other.end - max(step, other.start), 0)
        remaining += steps_left * seconds_per_step * _flops_per_step(model, config, other) / here
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


_profiling = {"active": False}


def _maybe_profile(config, workdir: str, step: int) -> None:
    """A jax.profiler trace of `profile_steps` steps from `profile_start_step` into WORKDIR/profile (TensorBoard)."""
    if config.profile_steps <= 0:
        return
    if step == config.profile_start_step and not _profiling["active"]:
        jax.profiler.start_trace(os.path.join(workdir, "profile"))
        _profiling["active"] = True
    elif step == config.profile_start_step + config.profile_steps and _profiling["active"]:
        jax.profiler.stop_trace()
        _profiling["active"] = False
        log.info("profile of steps %d-%d written to %s/profile", config.profile_start_step, step - 1, workdir)


def _export(config, workdir: str, params, graphdef, is_chief: bool) -> None:
    """Writes WORKDIR/export, the Hugging Face directory of the final parameters (config.export_at_end)."""
    if not config.export_at_end:
        return
    from flax import nnx

    from bert_jax import hf

    host_params = _replicated_host_copy(params)
    if is_chief:
        out = epath.Path(workdir) / "export"
        # export_pretrained writes a local directory atomically; an object-store workdir gets a copy of it.
        local = out if "://" not in str(workdir) else epath.Path(tempfile.mkdtemp(prefix="bert_jax_export_"))
        written = hf.export_pretrained(nnx.merge(graphdef, host_params), str(local),
                                       vocab_file=config.data.vocab_file, lowercase=config.data.lowercase, force=True)
        if local != out:
            out.mkdir(parents=True, exist_ok=True)
            for path in written:
                (local / path.name).copy(out / path.name, overwrite=True)
        log.info("exported %s to %s", ", ".join(p.name for p in written), out)
    _sync("exported")


def _replicated_host_copy(params):
    """Every process gets the full parameters as NumPy (an all-gather on multi-host meshes)."""
    from jax.experimental import multihost_utils

    if jax.process_count() > 1:
        return jax.tree.map(lambda x: np.asarray(x), multihost_utils.process_allgather(params, tiled=True))
    return jax.device_get(params)
