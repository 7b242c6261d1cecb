"""Checkpoints of a run: the train state, every host's data-iterator position, and metadata — via orbax.

    WORKDIR/checkpoints/<step>/state/      TrainState (params, optimizer state, step, non-finite streak), sharded
                             /data/       grain iterator state, one file per JAX process
                             /metadata/   config, mesh, phase, package versions (JSON)

Saving is asynchronous (orbax writes in a background thread while training goes on) and atomic (orbax writes a
temporary directory and renames it when every host has finished), so `latest_step()` only ever sees complete
checkpoints: a run killed mid-save resumes from the previous one. Restore takes the *current* run's shardings, so a
checkpoint written on one mesh loads onto another (16 devices -> 4, data -> fsdp).

The dropout RNG needs no saving: it is `fold_in(key(seed), step)` (see step.py); `seed` is in the saved config.
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
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from bert_jax.errors import CheckpointError
from bert_jax.training import integrity

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_VERSIONED_PACKAGES = ("bert_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy")


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


def run_metadata(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, phase,
                 frozen_fingerprint: str = "") -> dict[str, Any]:
    return {
        "frozen_fingerprint": frozen_fingerprint,  # the objective's frozen model (a teacher), "" for none
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
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many types; none should reach the user raw
        raise CheckpointError(
            f"checkpoint {manager.directory / str(step)} cannot be restored: it is damaged or does not fit this run "
            f"({_first_line(e)})"
        ) from e
    return restored.state, restored.metadata


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def read_metadata(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    try:
        return manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())).metadata
    except Exception as e:  # noqa: BLE001 - see restore
        raise CheckpointError(
            f"checkpoint {manager.directory / str(step)} has no readable metadata ({_first_line(e)}): it was not "
            "written by bert_jax's trainer, or it is damaged; use another --workdir or remove that step"
        ) from e


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


def load_run_model(workdir: str, step: int | None = None):
    """The model of a training run's checkpoint (parameters only, on one device) -> (model, the run's config as a
    ConfigDict, step). The model is the run's architecture with the heads of the objective it trained; configs that
    predate `config.objective` or newer model fields take their defaults."""
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    from bert_jax import models, objectives

    if not checkpoint_dir(workdir).exists():
        raise CheckpointError(f"{workdir} holds no checkpoints/ directory: is it a training --workdir?")
    manager = make_manager(workdir, keep=1, read_only=True)
    try:
        available = manager.all_steps()
        if not available:
            raise CheckpointError(f"{checkpoint_dir(workdir)} holds no complete checkpoint")
        step = max(available) if step is None else step
        if step not in available:
            raise CheckpointError(f"no checkpoint for step {step} in {workdir}; available: {sorted(available)}")
        saved = read_metadata(manager, step)
        heads = objectives.objective_class(saved["config"].get("objective", objectives.DEFAULT)).heads
        make_model = models.constructor(models.model_config(saved["config"]["model"]), heads)
        graphdef, abstract_params = nnx.split(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))), nnx.Param)
        one_device = NamedSharding(jax.sharding.Mesh(jax.devices()[:1], ("replica",)), PartitionSpec())
        params = restore_params(manager, step, abstract_params, jax.tree.map(lambda _: one_device, abstract_params))
    finally:
        manager.close()
    try:
        integrity.verify_params(params, saved, f"the checkpoint at step {step} in {workdir}")
    except integrity.CheckpointDamaged as damage:
        raise CheckpointError(f"{damage}; use an earlier step (--step; available: {sorted(available)})") from None
    return nnx.merge(graphdef, params), ml_collections.ConfigDict(saved["config"]), step


def replicated_host_copy(params):
    """Every process gets the full parameters as NumPy (an all-gather on multi-host meshes)."""
    from jax.experimental import multihost_utils

    if jax.process_count() > 1:
        return jax.tree.map(lambda x: np.asarray(x), multihost_utils.process_allgather(params, tiled=True))
    return jax.device_get(params)


class PreemptionWatch:
    """Tells every process, at the same step, that the job must stop: a preemption notice (SIGTERM) or a first
    Ctrl-C (SIGINT). The run then saves and exits cleanly; a second Ctrl-C aborts at once.

    Multi-process: JAX's preemption service (started by `jax.distributed.initialize`) catches SIGTERM on any host
    and agrees on a step all hosts reach (`multihost_utils.reached_preemption_sync_point`); a first SIGINT is turned
    into a SIGTERM to this process so it takes the same path. Single process: signal handlers set a flag that the
    next step sees. Must be called once per step, on every process.
    """

    def __init__(self) -> None:
        from jax._src import distributed  # the public API has no "is initialised" query

        self._multi_process = distributed.global_state.client is not None
        self._signalled = threading.Event()
        self._signal_name = "preemption notice (SIGTERM)"
        self._previous_handlers = {}
        if threading.current_thread() is threading.main_thread():
            if not self._multi_process:
                self._previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._previous_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigterm(self, signum, frame) -> None:
        self._signalled.set()

    def _on_sigint(self, signum, frame) -> None:
        if self._signal_name.startswith("interrupt"):  # the second Ctrl-C: stop now, as Python would
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self._signal_name = "interrupt (Ctrl-C; press it again to abort without saving)"
        log.warning("Ctrl-C: saving a checkpoint at the next step, then exiting; press Ctrl-C again to abort now")
        if self._multi_process:
            os.kill(os.getpid(), signal.SIGTERM)  # every host agrees on the step through the preemption service
        else:
            self._signalled.set()

    def describe(self) -> str:
        return self._signal_name

    def reached(self, step: int) -> bool:
        if self._multi_process:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self._signalled.is_set()

    def close(self) -> None:
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)
        self._previous_handlers = {}


def check_compatible(config: ml_collections.ConfigDict, saved: dict[str, Any], mesh, step: int,
                     frozen_fingerprint: str = "") -> None:
    """A checkpoint resumes only a run of the same architecture, objective, process count and loader workers; the
    message says what differs and how to resume. Fields a checkpoint's config predates take their defaults, so
    checkpoints of earlier versions resume."""
    from bert_jax import models, objectives

    saved_config = saved["config"]
    saved_objective = saved_config.get("objective", objectives.DEFAULT)
    if saved_objective != config.objective:
        raise CheckpointError(
            f"the checkpoint at step {step} was trained with objective {saved_objective!r} and this run asks for "
            f"{config.objective!r}: its parameters and heads differ; pass --config.objective={saved_objective} or "
            "use a new --workdir"
        )
    try:
        saved_model = models.model_config(saved_config["model"]).architecture()
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"the checkpoint at step {step} has a model config this version cannot read ({e}); "
                              "use a new --workdir") from None
    current_model = models.model_config(config.model.to_dict()).architecture()
    changed = sorted(k for k in current_model if saved_model.get(k) != current_model[k])
    if changed:
        raise CheckpointError(
            f"the checkpoint at step {step} was trained with a different model (fields {changed}: "
            f"{ {k: saved_model.get(k) for k in changed} }); use its config or a new --workdir"
        )
    if saved.get("frozen_fingerprint", "") != frozen_fingerprint:
        raise CheckpointError(
            f"the checkpoint at step {step} was trained against another frozen model (teacher) than this run loads "
            f"(parameter hash {saved.get('frozen_fingerprint', '')[:12] or 'none'} there, "
            f"{frozen_fingerprint[:12] or 'none'} now): resume with the same teacher, or start in a new --workdir"
        )
    if saved.get("process_count", 1) != jax.process_count():
        raise CheckpointError(
            f"the checkpoint at step {step} was written by {saved['process_count']} processes and this run has "
            f"{jax.process_count()}: each host's data position cannot be carried over; run with "
            f"{saved['process_count']} hosts (any mesh over them works)"
        )
    saved_workers = saved_config["data"].get("worker_count")
    if saved_workers != config.data.worker_count:
        raise CheckpointError(
            f"the checkpoint at step {step} was written with data.worker_count={saved_workers} and this run has "
            f"{config.data.worker_count}: the data iterator's position is kept per worker; pass "
            f"--config.data.worker_count={saved_workers}"
        )
    if saved["mesh"] != {name: int(size) for name, size in mesh.shape.items()}:
        log.info("restoring a checkpoint written on mesh %s onto mesh %s", saved["mesh"], dict(mesh.shape))
    current = json.loads(config.to_json_best_effort())
    for key in ("batch_size", "train_steps", "seed", "phases", "optimizer"):
        if saved_config.get(key) != current.get(key):
            log.warning("config.%s differs from the checkpoint's (%s -> %s); resuming anyway",
                        key, saved_config.get(key), current.get(key))
