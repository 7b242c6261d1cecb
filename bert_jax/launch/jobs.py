"""The training part of a job (config, workdir, data, secrets, code), checked on this machine before anything runs.

The config is loaded here with the same overrides the workers will get, so a typo in a field name, an invalid
value, a mesh that does not fit the slice, or a batch that the hosts cannot split is reported before a TPU is
created or a wheel is shipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

from bert_jax.launch import gcloud, remote, secrets
from bert_jax.launch.accelerators import AcceleratorSpec
from bert_jax.errors import InputError

REMOTE_DATA_DIR = "data"  # relative to the job directory, where the trainer runs
_GCS_URL = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$")  # bucket: 3-63 characters


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    config_path: Path  # the local config file
    config_arg: str | None  # the variants after ":"
    overrides: tuple[str, ...]  # FIELD=VALUE, as the workers get them
    workdir: str
    data_source: str | None  # gs:// dataset copied to each worker, or None (config.data.dir as given)
    secrets: Mapping[str, str]  # --env NAME -> value (never printed)
    wheel: Path | None  # prebuilt wheel, or None to build one from the checkout
    extras: str  # pip extras installed on the workers ("tpu" pulls jax[tpu])
    packages: tuple[str, ...]  # more packages for the workers (gcsfs: gs:// paths through etils/orbax)
    python_version: str  # the workers' venv Python
    constraints: Path | None
    remote_dir: str
    train_steps: int

    @property
    def remote_config_spec(self) -> str:
        spec = f"configs/{self.config_path.name}"
        return f"{spec}:{self.config_arg}" if self.config_arg is not None else spec

    def train_arguments(self) -> list[str]:
        return remote.train_arguments(self.remote_config_spec, self.workdir, self.overrides)


def check_gcs_url(url: str, flag: str) -> str:
    if not _GCS_URL.match(url):
        raise InputError(f"{flag} {url!r} is not a gs://BUCKET/PATH URL")
    return url.rstrip("/")


def training_spec(
    *,
    config: str,
    overrides: Sequence[str],
    workdir: str | None,
    accelerator: AcceleratorSpec | None,
    data: str | None = None,
    env_names: Sequence[str] = (),
    environ: Mapping[str, str] = os.environ,
    wheel: str | None = None,
    extras: str = "tpu",
    packages: Sequence[str] = ("gcsfs",),
    python_version: str = "3.12",
    constraints: str | None = None,
    remote_dir: str = remote.DEFAULT_REMOTE_DIR,
    allow_local_workdir: bool = False,
) -> TrainingSpec:
    """Validates everything `run` needs; raises InputError naming the flag or config field and the fix."""
    from bert_jax.configuration import load_config, resolve_config_file, split_spec
    from bert_jax.errors import ConfigError, MeshError
    from bert_jax.training.rules import mesh_shape

    if not workdir:
        raise InputError("--workdir is required: the gs://BUCKET/PATH where checkpoints and metrics go")
    if workdir.startswith("gs://"):
        workdir = check_gcs_url(workdir, "--workdir")
    elif not allow_local_workdir:
        raise InputError(
            f"--workdir {workdir!r} is not on GCS: a recreated TPU VM loses its disks, and each worker would "
            f"checkpoint to its own; use gs://BUCKET/PATH (or --allow_local_workdir for a path every worker shares "
            f"and that outlives the VM, such as a Filestore mount)"
        )
    overrides = [o.removeprefix("config.") for o in overrides]
    if data is not None:
        data = check_gcs_url(data, "--data")
        fields = {o.split("=", 1)[0].strip() for o in overrides}
        if "data.dir" in fields:
            raise InputError("give either --data gs://... (copied to each worker) or --config.data.dir, not both")
        overrides.append(f"data.dir={REMOTE_DATA_DIR}")
        if "data.vocab_file" not in fields:  # a built dataset carries its vocab.txt (the export ships it)
            overrides.append(f"data.vocab_file={REMOTE_DATA_DIR}/vocab.txt")
    config_path_text, config_arg = split_spec(config)
    try:
        config_path = resolve_config_file(config_path_text)  # a bundled name ships as its file, like any other
        loaded = load_config(config, overrides)
    except ConfigError as error:
        raise InputError(f"--config {config}: {error}") from None
    if accelerator is not None:
        sizes = {"data": loaded.mesh.data, "fsdp": loaded.mesh.fsdp, "tensor": loaded.mesh.tensor}
        try:
            mesh_shape(sizes, accelerator.devices)
        except MeshError as error:
            raise InputError(f"{accelerator.describe()}: {error}") from None
        if loaded.batch_size % accelerator.workers:
            raise InputError(
                f"config.batch_size {loaded.batch_size} is not divisible by the {accelerator.workers} workers of "
                f"{accelerator.name} (each loads batch_size / workers examples); set --config.batch_size to a "
                f"multiple of {accelerator.workers}"
            )
    wheel_path = None
    if wheel is not None:
        from bert_jax.launch.wheel import check_wheel

        wheel_path = check_wheel(wheel)
    constraints_path = Path(constraints) if constraints else None
    if constraints_path is not None and not constraints_path.is_file():
        raise InputError(f"--constraints {constraints}: no such file")
    try:
        remote.check_remote_dir(remote_dir)
    except ValueError as error:
        raise InputError(f"--remote_dir: {error}") from None
    return TrainingSpec(
        config_path=config_path,
        config_arg=config_arg,
        overrides=tuple(overrides),
        workdir=workdir,
        data_source=data,
        secrets=secrets.collect(env_names, environ),
        wheel=wheel_path,
        extras=extras,
        packages=tuple(packages),
        python_version=python_version,
        constraints=constraints_path,
        remote_dir=remote_dir,
        train_steps=int(loaded.train_steps),
    )


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a subcommand needs: where the TPU is, what to create, what to train, how often to look."""

    target: gcloud.Target
    queued: bool  # create (and, under --dry-run, assume) a queued resource rather than a bare TPU VM
    request: gcloud.SliceRequest | None = None  # for up / watch
    accelerator: AcceleratorSpec | None = None
    training: TrainingSpec | None = None  # for run / watch
    remote_dir: str = remote.DEFAULT_REMOTE_DIR
    poll_seconds: float = 30.0
    wait_timeout: float = 24 * 3600.0  # how long to wait for a slice to become ready
