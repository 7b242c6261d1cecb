"""A checkpoint is verified before a run trusts it, and a state that is not finite is never saved.

At save, a position-weighted checksum of every array of the state is computed on the device (a wrapping uint32 sum
of each element's bits times a per-position weight: one small transfer, independent of the mesh) and recorded in the
checkpoint's metadata with the state's finiteness. At restore the same checksums are recomputed: a flipped bit, a
truncated or rewritten array file, or a swapped file is found, and the run falls back to the newest checkpoint that
verifies, saying which one it skipped and why. Checkpoints written before checksums existed are checked for
finiteness only.
"""

from __future__ import annotations

import errno
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import CheckpointError, TrainingError

_WEIGHT_MULTIPLIER = np.uint32(2654435761)  # Knuth's multiplicative hash constant: positions get distinct weights


class CheckpointDamaged(CheckpointError):
    """A checkpoint whose files cannot be read back as the state they were written from."""


def _bits(x: jax.Array) -> jax.Array:
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    if x.dtype.itemsize == 8:  # 64-bit leaves (none in our state today): fold the two halves
        halves = jax.lax.bitcast_convert_type(x, jnp.uint32)
        return (halves[..., 0] ^ halves[..., 1]).reshape(-1)
    return jax.lax.bitcast_convert_type(x, unsigned).reshape(-1).astype(jnp.uint32)


@jax.jit
def _summaries(tree):
    def checksum(x):
        bits = _bits(jnp.asarray(x))
        weights = jnp.arange(bits.size, dtype=jnp.uint32) * _WEIGHT_MULTIPLIER + jnp.uint32(1)
        return jnp.sum(bits * weights, dtype=jnp.uint32)

    leaves = jax.tree.leaves(tree)
    finite = [jnp.all(jnp.isfinite(leaf)) for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return [checksum(leaf) for leaf in leaves], jnp.all(jnp.stack(finite)) if finite else jnp.bool_(True)


def summarize(state) -> dict:
    """{"state_checksums": [int per array], "state_finite": bool, "params_checksums": [...]} of a (sharded) state,
    computed on the device. The parameters' own list lets an export, which restores only them, verify them."""
    checksums, finite = jax.device_get(_summaries(state))
    checksums = [int(c) for c in checksums]
    # The parameters' arrays are the state's under its `params` field, in the same order: no second pass.
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    params_checksums = [c for path, c in zip(paths, checksums) if getattr(path[0], "name", None) == "params"]
    return {"state_checksums": checksums, "state_finite": bool(finite), "params_checksums": params_checksums}


def verify_params(params, saved_metadata: dict, where: str) -> None:
    """`verify` for parameters restored without their optimizer state (export, fill-mask from a workdir)."""
    checksums, finite = jax.device_get(_summaries(params))
    if not bool(finite):
        raise CheckpointDamaged(f"{where} holds non-finite parameters")
    expected = saved_metadata.get("params_checksums")
    if expected is not None and [int(c) for c in checksums] != expected:
        raise CheckpointDamaged(f"{where}: its parameters differ from their checksums at save (a flipped bit or a "
                                "damaged file)")


def check_savable(summary: dict, step: int) -> None:
    """A state with a NaN or an infinity is never written: it would replace a good checkpoint with a useless one."""
    if not summary["state_finite"]:
        raise TrainingError(f"the state at step {step} holds non-finite values, so it was not saved; the last "
                            "checkpoint is kept. Lower optimizer.learning_rate or use model.dtype=float32, then resume")


def verify(state, saved_metadata: dict, where: str) -> None:
    """Raises `CheckpointDamaged` when the restored state differs from what was saved, or is not finite."""
    summary = summarize(state)
    if not summary["state_finite"]:
        raise CheckpointDamaged(f"{where} holds non-finite values")
    expected = saved_metadata.get("state_checksums")
    if expected is None:
        return  # written before checksums existed: finiteness is all there is to check
    if len(expected) != len(summary["state_checksums"]):
        raise CheckpointDamaged(f"{where} has {len(summary['state_checksums'])} arrays but its metadata "
                                f"records {len(expected)}")
    bad = [i for i, (a, b) in enumerate(zip(expected, summary["state_checksums"])) if a != b]
    if bad:
        raise CheckpointDamaged(f"{where}: {len(bad)} of {len(expected)} arrays differ from their checksums at save "
                                "(a flipped bit or a damaged file)")


def check_space(directory, step: int, approx_bytes: int) -> None:
    """Refuses to start the save of `step` on a local disk without room for it. Orbax writes asynchronously, so a
    disk that fills mid-write is only found later, under tracebacks from its writer threads; checking first turns
    the common case into one line at the step that would have failed. Remote storage reports no free space: skipped.
    """
    if "://" in str(directory):
        return
    free = _free_bytes(str(directory))
    if free is not None and free < approx_bytes:
        raise _disk_full(str(directory), step, approx_bytes, free)


def save_failure(error: BaseException, directory, step: int, approx_bytes: int) -> BaseException:
    """The error to stop with when saving a checkpoint failed (found at `step`): a one-line `TrainingError` for a
    full disk (naming the directory, the space free and needed) or a vanished workdir; the original error otherwise.
    The step named is the failed checkpoint's, read from the path in orbax's message where it has one."""
    text = f"{type(error).__name__}: {error}"
    directory = str(directory)
    failed = re.search(r"/(\d+)\.orbax-checkpoint-tmp", text)
    step = int(failed.group(1)) if failed else step
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left" in text \
            or "RESOURCE_EXHAUSTED" in text and "space" in text.lower():
        return _disk_full(directory, step, approx_bytes, _free_bytes(directory))
    if not os.path.isdir(os.path.dirname(directory.rstrip("/")) or "."):
        return TrainingError(f"the checkpoint of step {step} could not be written: the workdir of {directory} no "
                             "longer exists (deleted while the run was going?). Nothing was lost before the last "
                             "complete checkpoint; restore the workdir or start again")
    return error


def _disk_full(directory: str, step: int, approx_bytes: int, free: int | None) -> TrainingError:
    return TrainingError(
        f"the checkpoint of step {step} could not be written to {directory}: the disk is full "
        f"({_mib(free)} free; a checkpoint of this run needs about {_mib(approx_bytes)}). Free space, then run "
        "the same command: it resumes from the last complete checkpoint and removes any partial one")


def _free_bytes(directory: str) -> int | None:
    path = directory
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path or ".").free
    except OSError:
        return None


def _mib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**20:,.1f} MiB"


def state_bytes(abstract_state) -> int:
    return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(abstract_state))
