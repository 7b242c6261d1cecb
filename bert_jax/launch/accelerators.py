"""Cloud TPU accelerator types (`v4-32`, `v5litepod-16`, ...) -> chips, hosts and JAX devices; input checks.

How accelerator types count and split into VMs is in the shared table, `bert_jax/launch/tpu_generations.py`.

The checks here catch typos before anything is created; the TPU API remains the judge of what a zone offers.
"""

from __future__ import annotations

import dataclasses
import re
import sys

from bert_jax.launch import tpu_generations
from bert_jax.errors import InputError
from bert_jax.launch.tpu_generations import TpuGeneration


# By accelerator-type prefix (v4, v5litepod): the spelling gcloud takes.
GENERATIONS: dict[str, TpuGeneration] = {g.accelerator_prefix: g for g in tpu_generations.GENERATIONS.values()}

_ACCELERATOR = re.compile(r"^(?P<prefix>v\d+[a-z]*)-(?P<size>\d+)$")
# Compute zones: region (`us-central2`, `europe-west4`, `northamerica-northeast1`) plus a one-letter zone suffix.
_ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")
# TPU node and queued-resource IDs follow the Compute Engine resource-name rule (RFC 1035 label).
_RESOURCE_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
# Project IDs: 6-30 characters, optionally domain-scoped (`example.com:my-project`).
_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_RUNTIME_VERSION = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


@dataclasses.dataclass(frozen=True)
class AcceleratorSpec:
    name: str  # as gcloud takes it: v4-32
    generation: TpuGeneration
    chips: int
    workers: int  # TPU VMs = JAX processes
    devices: int  # jax.device_count() over the whole slice

    @property
    def default_runtime_version(self) -> str:
        return self.generation.runtime_versions[0]

    def describe(self) -> str:
        return f"{self.name}: {self.chips} chips, {self.workers} worker VM(s), {self.devices} JAX devices"


def parse_accelerator_type(name: str) -> AcceleratorSpec:
    """`v4-32` -> 16 chips on 4 workers; an unknown or malformed type is an InputError listing valid ones."""
    match = _ACCELERATOR.match(name.strip().lower())
    known = "; ".join(f"{g.accelerator_prefix} ({g.counts}: {g.examples}, ...)" for g in GENERATIONS.values())
    if not match:
        raise InputError(
            f"--accelerator_type {name!r} is not an accelerator type: expected GENERATION-SIZE, e.g. v4-32 or "
            f"v5litepod-16 (known: {known})"
        )
    generation = GENERATIONS.get(match["prefix"])
    if generation is None:
        raise InputError(f"--accelerator_type {name!r}: unknown TPU generation {match['prefix']!r}; known: {known}")
    size = int(match["size"])
    if size not in generation.sizes:
        raise InputError(
            f"--accelerator_type {name!r}: {generation.accelerator_prefix} slices are counted in {generation.counts} and come "
            f"in sizes like {generation.examples} (not {size})"
        )
    chips = size // generation.cores_per_chip if generation.counts == "cores" else size
    if chips <= generation.max_single_worker_chips:
        workers = 1
    else:
        workers = chips // generation.chips_per_worker
    return AcceleratorSpec(
        name=f"{generation.accelerator_prefix}-{size}",
        generation=generation,
        chips=chips,
        workers=workers,
        devices=chips * generation.devices_per_chip,
    )


def check_runtime_version(runtime_version: str | None, accelerator: AcceleratorSpec) -> str:
    """The runtime version to use: the generation's default, or the given one if it can belong to it."""
    if not runtime_version:
        return accelerator.default_runtime_version
    if not _RUNTIME_VERSION.match(runtime_version):
        raise InputError(
            f"--runtime_version {runtime_version!r} is not a TPU software version (e.g. tpu-ubuntu2204-base)"
        )
    generation = accelerator.generation
    if runtime_version in generation.runtime_versions:
        return runtime_version
    for other in GENERATIONS.values():
        if runtime_version in other.runtime_versions:
            raise InputError(
                f"--runtime_version {runtime_version!r} is the software version for {other.accelerator_prefix} TPUs, not "
                f"{accelerator.name}; use {generation.runtime_versions[0]} (or leave --runtime_version out)"
            )
    print(
        f"launch: note: runtime version {runtime_version!r} is not in bert_jax's table for {generation.accelerator_prefix} "
        f"({', '.join(generation.runtime_versions)}); list the valid ones with `gcloud compute tpus tpu-vm "
        f"versions list --zone ZONE`",
        file=sys.stderr,
    )
    return runtime_version


def check_zone(zone: str) -> str:
    if not _ZONE.match(zone or ""):
        raise InputError(
            f"--zone {zone!r} is not a Compute Engine zone: expected REGION-LETTER such as us-central2-b (v4), "
            f"us-west4-a (v5e) or europe-west4-a; see `gcloud compute tpus locations list`"
        )
    return zone


def check_resource_name(name: str) -> str:
    if not _RESOURCE_NAME.match(name or ""):
        raise InputError(
            f"--name {name!r} is not a valid TPU name: 1-63 characters, lowercase letters, digits and dashes, "
            f"starting with a letter and not ending with a dash (e.g. bert-base-v4)"
        )
    return name


def check_project(project: str | None) -> str | None:
    if project is not None and not _PROJECT.match(project):
        raise InputError(
            f"--project {project!r} is not a Google Cloud project ID (6-30 lowercase letters, digits and dashes, "
            f"starting with a letter); leave it out to use `gcloud config get-value project`"
        )
    return project
