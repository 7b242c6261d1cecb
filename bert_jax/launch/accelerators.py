"""Cloud TPU accelerator types (`v4-32`, `v5litepod-16`, ...) -> chips, hosts and JAX devices; input checks.

The number in an accelerator type counts TensorCores for v2, v3, v4 and v5p (two per chip) and chips for v5e
(`v5litepod`) and v6e. A slice of up to 4 chips (8 for v5e/v6e) is one TPU VM; larger slices have 4 chips per VM
(worker), and every worker runs one JAX process. JAX sees one device per chip, except on v2/v3, where each of the
two cores is a device. Sources: the Cloud TPU system-architecture pages and the runtime-version table
(https://cloud.google.com/tpu/docs/runtimes).

The checks here catch typos before anything is created; the TPU API remains the judge of what a zone offers.
"""

from __future__ import annotations

import dataclasses
import re
import sys

from bert_jax.launch.errors import InputError


@dataclasses.dataclass(frozen=True)
class Generation:
    prefix: str  # the part of the accelerator type before the dash
    counts: str  # what the number after the dash counts: "cores" or "chips"
    cores_per_chip: int
    devices_per_chip: int  # JAX devices per chip (v4/v5p cores are fused into one "megacore" device)
    chips_per_worker: int  # chips per TPU VM in multi-VM slices
    max_single_worker_chips: int  # the largest slice that is a single TPU VM
    sizes: tuple[int, ...]  # accepted numbers after the dash
    runtime_versions: tuple[str, ...]  # software versions for JAX; the first is the default

    @property
    def examples(self) -> str:
        return ", ".join(f"{self.prefix}-{size}" for size in self.sizes[:4])


def _whole_workers(cores_per_worker: int, max_cores: int) -> tuple[int, ...]:
    """v4/v5p slices come in whole 4-chip workers; the API checks the exact topology."""
    return tuple(range(cores_per_worker, max_cores + 1, cores_per_worker))


_V4_RUNTIMES = ("tpu-ubuntu2204-base", "tpu-vm-v4-base", "tpu-vm-base")
GENERATIONS: dict[str, Generation] = {
    generation.prefix: generation
    for generation in (
        Generation("v2", "cores", 2, 2, 4, 4, (8, 32, 128, 256, 512), _V4_RUNTIMES),
        Generation("v3", "cores", 2, 2, 4, 4, (8, 32, 64, 128, 256, 512, 1024, 2048), _V4_RUNTIMES),
        Generation("v4", "cores", 2, 1, 4, 4, _whole_workers(8, 8192), _V4_RUNTIMES),
        Generation("v5p", "cores", 2, 1, 4, 4, _whole_workers(8, 17920), ("v2-alpha-tpuv5",)),
        Generation(
            "v5litepod", "chips", 1, 1, 4, 8, (1, 4, 8, 16, 32, 64, 128, 256),
            ("v2-alpha-tpuv5-lite", "v2-tpuv5-litepod"),
        ),
        Generation("v6e", "chips", 1, 1, 4, 8, (1, 4, 8, 16, 32, 64, 128, 256), ("v2-alpha-tpuv6e",)),
    )
}

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
    generation: Generation
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
    known = "; ".join(f"{g.prefix} ({g.counts}: {g.examples}, ...)" for g in GENERATIONS.values())
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
            f"--accelerator_type {name!r}: {generation.prefix} slices are counted in {generation.counts} and come "
            f"in sizes like {generation.examples} (not {size})"
        )
    chips = size // generation.cores_per_chip if generation.counts == "cores" else size
    if chips <= generation.max_single_worker_chips:
        workers = 1
    else:
        workers = chips // generation.chips_per_worker
    return AcceleratorSpec(
        name=f"{generation.prefix}-{size}",
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
                f"--runtime_version {runtime_version!r} is the software version for {other.prefix} TPUs, not "
                f"{accelerator.name}; use {generation.runtime_versions[0]} (or leave --runtime_version out)"
            )
    print(
        f"launch: note: runtime version {runtime_version!r} is not in bert_jax's table for {generation.prefix} "
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
