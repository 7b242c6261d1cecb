"""The denominator of MFU: the measured matmul peak of a device and of the whole mesh. The numerator, model FLOPs
per token, is the objective's (`Objective.flops_per_token`: the model config's encoder count plus its heads; the
formula and its check against XLA are in docs/bench_train_step.md).
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp

from bert_jax.models.layers import DTYPES


def flops_per_token(objective, model_config, shape) -> float:
    """Training (forward + backward) model FLOPs per input token of `objective` on `model_config` at `shape`."""
    return objective.flops_per_token(model_config, shape)


def peak_ways(devices) -> int:
    """How many devices' peaks make the mesh's peak: all of them, except on CPU, where emulated devices share the
    host's cores (one device's matmul already uses all of them) and each process is one host."""
    devices = list(devices)
    if devices[0].platform == "cpu":
        return len({device.process_index for device in devices})
    return len(devices)


def default_matmul_size(device: jax.Device) -> int:
    """Big enough to keep every core's FMA units busy, small enough to time in seconds on a 2-core CPU."""
    return 2048 if device.platform == "cpu" else 8192


@dataclasses.dataclass(frozen=True)
class MatmulRate:
    """Achieved rate of a square matmul: per wall-clock second, and per second of this process's CPU time (all
    threads), which a shared CPU machine disturbs less than wall time."""

    flops_per_s: float
    flops_per_cpu_s: float


class MatmulProbe:
    """A square jitted matmul on one device, compiled once, timed in bursts.

    A benchmark takes a burst before, between and after its timed steps and uses the fastest burst as the peak. On a
    shared machine the achieved matmul rate drifts by tens of percent within a minute, so one burst can land in a
    slow moment the steps never saw, which would flatter MFU; the fastest burst of the run is the conservative
    denominator. Each burst starts with an untimed run: the first matmul after a train step is slower (measured
    here: 124 against 170 GFLOP/s), as the step leaves other data in the caches and its own threads parked."""

    def __init__(self, dtype: str = "float32", device: jax.Device | None = None, size: int | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        device = device or jax.devices()[0]
        self.size = size or default_matmul_size(device)
        keys = jax.random.split(jax.random.key(0))
        self._a = jax.device_put(jax.random.normal(keys[0], (self.size, self.size), DTYPES[dtype]), device)
        self._b = jax.device_put(jax.random.normal(keys[1], (self.size, self.size), DTYPES[dtype]), device)
        self._matmul = jax.jit(jnp.matmul).lower(self._a, self._b).compile()
        self.bursts: list[MatmulRate] = []

    def burst(self, repeats: int = 5) -> MatmulRate:
        """One untimed run, then the median of `repeats` timed runs, each ended by `block_until_ready`."""
        jax.block_until_ready(self._matmul(self._a, self._b))
        walls, cpus = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            jax.block_until_ready(self._matmul(self._a, self._b))
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu_start)
        work = 2.0 * self.size**3
        rate = MatmulRate(work / statistics.median(walls), work / max(statistics.median(cpus), 1e-9))
        self.bursts.append(rate)
        return rate

    def peak(self) -> MatmulRate:
        """The fastest burst so far (per wall second; its per-CPU-second rate with it)."""
        if not self.bursts:
            raise ValueError("burst() was never called")
        return max(self.bursts, key=lambda rate: rate.flops_per_s)


def measure_peak_flops(dtype: str = "float32", device: jax.Device | None = None, size: int | None = None,
                       repeats: int = 3, bursts: int = 3) -> float:
    """Achieved FLOP/s (wall clock) of a large jitted matmul on `device`, the denominator of the trainer's MFU: the
    fastest of `bursts` bursts of `repeats` runs (see MatmulProbe for why one burst is not enough)."""
    probe = MatmulProbe(dtype, device, size)
    for _ in range(bursts):
        probe.burst(repeats)
    return probe.peak().flops_per_s
