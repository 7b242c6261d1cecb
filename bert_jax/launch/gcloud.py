"""The `gcloud` commands the launcher runs, as argv lists (pure functions: no I/O, easy to print and test).

A job is one TPU VM (node) named NAME, either created directly (`tpu-vm create`) or through a queued resource also
named NAME whose single node has the ID NAME (`queued-resources create --node-id NAME`), so `tpu-vm ssh NAME` reaches
the workers either way. Flags are written `--flag=value` so that a printed command is unambiguous to read and to
paste into a shell. Commands that could prompt (deletes, the first ssh key generation) carry `--quiet`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

GCLOUD = "gcloud"
PROVISIONING_MODELS = ("on-demand", "spot", "reserved")


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a job's TPU lives."""

    name: str
    zone: str
    project: str | None = None  # None: gcloud's configured project
    internal_ip: bool = False  # ssh/scp over internal IPs (launching from a VM in the same VPC)

    def location_flags(self) -> list[str]:
        flags = [f"--zone={self.zone}"]
        if self.project:
            flags.append(f"--project={self.project}")
        return flags

    def connection_flags(self) -> list[str]:
        # Recreated VMs keep their name but get new host keys; strict checking would refuse them after `watch`
        # recreates a slice.
        flags = ["--strict-host-key-checking=no", "--quiet"]
        if self.internal_ip:
            flags.append("--internal-ip")
        return flags


@dataclasses.dataclass(frozen=True)
class SliceRequest:
    """What `up` asks for."""

    accelerator_type: str
    runtime_version: str
    provisioning: str = "on-demand"  # one of PROVISIONING_MODELS
    queued: bool = True  # a queued resource (waits for capacity) rather than a direct create

    def __post_init__(self):
        if self.provisioning not in PROVISIONING_MODELS:
            raise ValueError(f"provisioning must be one of {PROVISIONING_MODELS}, got {self.provisioning!r}")

    def provisioning_flags(self) -> list[str]:
        return {"on-demand": [], "spot": ["--spot"], "reserved": ["--reserved"]}[self.provisioning]


def auth_list() -> list[str]:
    """Active accounts, one per line (empty output: not logged in)."""
    return [GCLOUD, "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"]


def tpu_vm_create(target: Target, request: SliceRequest) -> list[str]:
    return [
        GCLOUD, "compute", "tpus", "tpu-vm", "create", target.name, *target.location_flags(),
        f"--accelerator-type={request.accelerator_type}", f"--version={request.runtime_version}",
        *request.provisioning_flags(),
    ]


def queued_resource_create(target: Target, request: SliceRequest) -> list[str]:
    return [
        GCLOUD, "compute", "tpus", "queued-resources", "create", target.name, *target.location_flags(),
        f"--node-id={target.name}", f"--accelerator-type={request.accelerator_type}",
        f"--runtime-version={request.runtime_version}", *request.provisioning_flags(),
    ]


def create(target: Target, request: SliceRequest) -> list[str]:
    return queued_resource_create(target, request) if request.queued else tpu_vm_create(target, request)


def tpu_vm_describe(target: Target) -> list[str]:
    return [GCLOUD, "compute", "tpus", "tpu-vm", "describe", target.name, *target.location_flags(), "--format=json"]


def queued_resource_describe(target: Target) -> list[str]:
    return [
        GCLOUD, "compute", "tpus", "queued-resources", "describe", target.name, *target.location_flags(),
        "--format=json",
    ]


def tpu_vm_delete(target: Target) -> list[str]:
    return [GCLOUD, "compute", "tpus", "tpu-vm", "delete", target.name, *target.location_flags(), "--quiet"]


def queued_resource_delete(target: Target) -> list[str]:
    # --force deletes the queued resource's node with it.
    return [
        GCLOUD, "compute", "tpus", "queued-resources", "delete", target.name, *target.location_flags(), "--force",
        "--quiet",
    ]


def ssh(target: Target, command: str, worker: str | int = "all", output_directory: str | None = None) -> list[str]:
    """Runs `command` (a shell string) on the workers; `worker` is "all", an index, or a list such as "1,3"."""
    argv = [
        GCLOUD, "compute", "tpus", "tpu-vm", "ssh", target.name, *target.location_flags(), f"--worker={worker}",
        f"--command={command}", *target.connection_flags(),
    ]
    if output_directory is not None:
        argv.append(f"--output-directory={output_directory}")  # one {WORKER}.log per worker
    return argv


def scp(
    target: Target, sources: Sequence[str], destination: str, worker: str | int = "all", recurse: bool = False
) -> list[str]:
    """Copies local `sources` to `destination` (relative to the remote home directory) on the workers."""
    argv = [
        GCLOUD, "compute", "tpus", "tpu-vm", "scp", *sources, f"{target.name}:{destination}",
        *target.location_flags(), f"--worker={worker}", *target.connection_flags(),
    ]
    if recurse:
        argv.append("--recurse")
    return argv
