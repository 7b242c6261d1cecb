"""Checkpoints of a run: the train state, every host's data-iterator position, and metadata — via orbax.

    WORKDIR/checkpoints/<step>/state/      TrainState (params, optimizer state, step, non-finite streak), sharded
                             /data/       grain iterator state, one file per JAX process
                             /metadata/   config, mesh, phase, package versions (JSON)

Saving is asynchronous (orbax writes in a background thread while training goes on) and atomic (orbax writes a
temporary directory and renames it when every host has finished), so `latest_step()` only ever sees complete
checkpoints: a run killed mid-save resumes from the previous one. Restore takes the *current* run's shardings, so a
checkpoint written on one mesh loads onto another (16 devices -> 4, data -> fsdp).

The dropout RNG needs no saving: it is `fold_in(key(seed), step)` (see steps.py); `seed` is in the saved config.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import signal
import threading
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_VERSIONED_PACKAGES = ("bert_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run; the message says why and what to do."""


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def checkpoint_dir(workdir: str) -> epath.Path:
    # orbax refuses relative paths (tensorstore needs absolute ones); object-store URLs are absolute already.
    root = workdir if "://" in str(workdir) else os.path.abspath(workdir)
    return epath.Path(root) / CHECKPOINT_DIR


def make_manager(workdir: str, *, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
    """The run's checkpoint manager. The trainer decides when to save (interval, phase boundaries, end, preemption),
    so orbax's own interval is 1 and `save` is only called on those steps."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=not read_only,
        read_only=read_only,
        enable_async_checkpointing=True,
        cleanup_tmp_directories=not read_only,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
            "metadata": ocp.JsonCheckpointHandler(),
        },
    )


def run_metadata(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, phase) -> dict[str, Any]:
    return {
        "config": json.loads(config.to_json_best_effort()),
        "mesh": {name: int(size) for name, size in mesh.shape.items()},
        "process_count": jax.process_count(),
        "phase": phase.index,
        "max_seq_length": phase.max_seq_length,
        "versions": package_versions(),
    }


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, metadata: dict[str, Any], *,
         force: bool = True) -> None:
    """Starts an asynchronous save of everything a bit-exact resume needs; returns as soon as the device arrays are
    copied (call `manager.wait_until_finished()` before exiting)."""
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            metadata=ocp.args.JsonSave(metadata),
        ),
        force=force,
    )


def _abstract(state, shardings):
    return jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), state, shardings
    )


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, shardings, data_iterator=None):
    """Restores the state onto `shardings` (this run's mesh) and, unless `data_iterator` is None, sets it to the
    saved position. Returns (state, metadata)."""
    items = dict(
        state=ocp.args.StandardRestore(_abstract(abstract_state, shardings)),
        metadata=ocp.args.JsonRestore(),
    )
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise CheckpointError(
            f"checkpoint {manager.directory / str(step)} does not fit this run ({type(e).__name__}: {e}); "
            "resume with the config it was written with, or start in a new --workdir"
        ) from e
    return restored.state, restored.metadata


def read_metadata(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    return manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())).metadata


def restore_params(manager: ocp.CheckpointManager, step: int, abstract_params, shardings):
    """Only the parameters (for export and inference), onto the given shardings; optimizer state is not read."""
    abstract = {"params": _abstract(abstract_params, shardings)}
    with ocp.PyTreeCheckpointer() as checkpointer:
        restored = checkpointer.restore(
            manager.directory / str(step) / "state",
            args=ocp.args.PyTreeRestore(
                item=abstract,
                restore_args=jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding), abstract),
                partial_restore=True,
            ),
        )
    return restored["params"]


class PreemptionWatch:
    """Tells every process, at the same step, that the job is being preempted (SIGTERM).

    Multi-process: JAX's preemption service (started by `jax.distributed.initialize`) catches SIGTERM on any host
    and agrees on a step all hosts reach (`multihost_utils.reached_preemption_sync_point`). Single process: a SIGTERM
    handler sets a flag that the next step sees. Must be called once per step, on every process.
    """

    def __init__(self) -> None:
        from jax._src import distributed  # the public API has no "is initialised" query

        self._multi_process = distributed.global_state.client is not None
        self._signalled = threading.Event()
        self._previous_handler = None
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self._signalled.set()

    def reached(self, step: int) -> bool:
        if self._multi_process:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self._signalled.is_set()

    def close(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None
