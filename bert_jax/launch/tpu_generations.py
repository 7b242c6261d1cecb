"""The one table of Cloud TPU generations: how accelerator types count, how slices split into VMs, software
versions, and per-chip memory and peak. The launcher (`launch/accelerators.py`) and compile-ahead
(`compile_ahead.py`) both read it, so a new generation is added in one place.

The number in an accelerator type counts TensorCores for v2, v3, v4 and v5p (two per chip) and chips for v5e
(`v5litepod`) and v6e. A slice of up to 4 chips (8 for v5e/v6e) is one TPU VM; larger slices have 4 chips per VM
(worker), and every worker runs one JAX process. JAX sees one device per chip, except on v2/v3, where each of the
two cores is a device. HBM and bf16 peak are per chip. Sources: the Cloud TPU system-architecture pages and the
runtime-version table (https://cloud.google.com/tpu/docs/runtimes).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TpuGeneration:
    name: str  # libtpu's topology prefix and our short name: v4, v5e
    accelerator_prefix: str  # Cloud accelerator-type prefix: v4-32, v5litepod-16
    cores_per_chip: int  # TensorCores per chip; accelerator types count cores when this is 2, else chips
    devices_per_chip: int  # JAX devices per chip (v4/v5p cores are fused into one "megacore" device)
    chips_per_worker: int  # chips per TPU VM in multi-VM slices
    max_single_worker_chips: int  # the largest slice that is a single TPU VM
    sizes: tuple[int, ...]  # accepted numbers after the dash of an accelerator type
    runtime_versions: tuple[str, ...]  # TPU VM software versions for JAX; the first is the default
    dims: int  # torus dimensions of a slice (3 on v2-v4/v5p, 2 on v5e/v6e)
    chip_config: str | None = None  # libtpu chip config for compile-ahead; None: compile-ahead does not support it
    hbm_gib: float | None = None  # HBM per chip
    peak_bf16_flops: float | None = None  # dense bf16 matmul peak per chip

    @property
    def counts(self) -> str:
        """What the number in an accelerator type counts."""
        return "cores" if self.cores_per_chip == 2 else "chips"

    @property
    def examples(self) -> str:
        return ", ".join(f"{self.accelerator_prefix}-{size}" for size in self.sizes[:4])


def _whole_workers(cores_per_worker: int, max_cores: int) -> tuple[int, ...]:
    """v4/v5p slices come in whole 4-chip workers; the API checks the exact topology."""
    return tuple(range(cores_per_worker, max_cores + 1, cores_per_worker))


_V4_RUNTIMES = ("tpu-ubuntu2204-base", "tpu-vm-v4-base", "tpu-vm-base")
_LITE_SIZES = (1, 4, 8, 16, 32, 64, 128, 256)

GENERATIONS: dict[str, TpuGeneration] = {
    g.name: g
    for g in (
        TpuGeneration("v2", "v2", 2, 2, 4, 4, (8, 32, 128, 256, 512), _V4_RUNTIMES, 2, peak_bf16_flops=45e12),
        TpuGeneration("v3", "v3", 2, 2, 4, 4, (8, 32, 64, 128, 256, 512, 1024, 2048), _V4_RUNTIMES, 2,
                      peak_bf16_flops=123e12),
        TpuGeneration("v4", "v4", 2, 1, 4, 4, _whole_workers(8, 8192), _V4_RUNTIMES, 3, "megacore", 32, 275e12),
        TpuGeneration("v5p", "v5p", 2, 1, 4, 4, _whole_workers(8, 17920), ("v2-alpha-tpuv5",), 3, "megacore", 95,
                      459e12),
        TpuGeneration("v5e", "v5litepod", 1, 1, 4, 8, _LITE_SIZES, ("v2-alpha-tpuv5-lite", "v2-tpuv5-litepod"), 2,
                      "default", 16, 197e12),
        TpuGeneration("v6e", "v6e", 1, 1, 4, 8, _LITE_SIZES, ("v2-alpha-tpuv6e",), 2, "default", 32, 918e12),
    )
}
