"""Where a run starts: the newest checkpoint that verifies, else a fresh state.

A checkpoint that cannot be read back as the state it was written from (a truncated or missing file, missing
metadata, a checksum that no longer matches, non-finite values) is set aside as `checkpoints/STEP.damaged-N` (kept
for inspection, never deleted) and the next older one is tried, with a warning naming the step and the reason. A
checkpoint of another run (a different model, objective, teacher, process count) is not damage: that stops the run
with the reason, as before. When every checkpoint is damaged the run stops rather than silently starting over.
"""

from __future__ import annotations

import logging

import jax
from etils import epath

from bert_jax.errors import CheckpointError
from bert_jax.training import checkpointing, inputs, integrity
from bert_jax.training.phases import phase_at

log = logging.getLogger("bert_jax")


def start(run_setup, manager, plan, frozen_fingerprint: str, train_iterator):
    """-> (state, step, phase, train iterator) for the newest usable checkpoint, or a fresh state at step 0.
    `train_iterator(phase)` makes a phase's (checkpointable) iterator of the run's data."""
    config = run_setup.config
    problems = []
    for step in sorted(manager.all_steps(), reverse=True):
        phase = phase_at(plan, step) or plan[-1]
        iterator = train_iterator(phase)
        where = f"checkpoint {manager.directory / str(step)}"
        try:
            try:
                saved = checkpointing.read_metadata(manager, step)
            except CheckpointError as e:
                raise integrity.CheckpointDamaged(str(e)) from e
            checkpointing.check_compatible(config, saved, run_setup.mesh, step, frozen_fingerprint)
            same_data = saved.get("max_seq_length") == phase.max_seq_length
            try:
                state, _ = checkpointing.restore(manager, step, run_setup.abstract_state, run_setup.shardings,
                                                 iterator if same_data else None)
            except CheckpointError as e:
                raise integrity.CheckpointDamaged(str(e)) from e
            integrity.verify(state, saved, where)
        except integrity.CheckpointDamaged as damage:
            problems.append(f"step {step}: {damage}")
            _set_aside(manager, step)
            log.warning("%s is damaged (%s); set aside, trying the one before", where, damage)
            continue
        if not same_data:
            log.warning("the checkpoint at step %d was in a phase of sequence length %s, but with this config step "
                        "%d is in phase %d (length %d): its data position does not apply, phase %d's data starts "
                        "from its beginning", step, saved.get("max_seq_length"), step, phase.index,
                        phase.max_seq_length, phase.index)
        log.info("resumed from %s at step %d (phase %d)", manager.directory / str(step), step, phase.index)
        return state, step, phase, iterator
    if problems:
        raise CheckpointError(f"no usable checkpoint in {manager.directory}: " + "; ".join(problems)
                              + ". The damaged ones were set aside as STEP.damaged-N; remove them to start afresh")
    phase = phase_at(plan, 0)
    return run_setup.init_state(), 0, phase, train_iterator(phase)


def _set_aside(manager, step: int) -> None:
    """Renames a damaged step directory so that orbax no longer lists it (it would also block a new save there)."""
    if jax.process_index() == 0:
        source = epath.Path(manager.directory) / str(step)
        index = 0
        while (target := source.parent / f"{step}.damaged-{index}").exists():
            index += 1
        source.rename(target)
    inputs.sync(f"set aside {step}")
    manager.reload()
