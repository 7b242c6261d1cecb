"""Published dense bf16 matmul peaks of accelerator chips: the MFU denominator on TPU and GPU, so our MFU compares
with MaxText's and the vendors' (a CPU has no published peak; there the trainer measures a matmul).

TPU peaks come from the one table of generations (`launch/tpu_generations.py`, per chip; a v2/v3 chip is two JAX
devices). GPU peaks are the vendors' datasheet numbers for dense (not 2:4-sparse) BF16 tensor-core math:
  H100 SXM 989.4 TFLOP/s, H100 NVL 835, H100 PCIe 756, H200 989.4, A100 312, L40S 362, L40 181, L4 121, B200 2250 (NVIDIA's
  H100, H200, A100, L40S, L40, L4 and DGX B200 datasheets).
A float32 run on these chips is measured against the same bf16 peak, as MaxText does: the number says how much of
the chip a run uses, whatever precision it chose.
"""

from __future__ import annotations

from bert_jax.launch.tpu_generations import GENERATIONS

# (lowercase substring of jax's device_kind, dense bf16 FLOP/s per device); the first match wins, so the more
# specific names come first.
GPU_PEAKS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756e12),
    ("h100 nvl", 835e12),
    ("h100", 989.4e12),  # SXM5 (device_kind "NVIDIA H100 80GB HBM3")
    ("h200", 989.4e12),
    ("gh200", 989.4e12),
    ("a100", 312e12),
    ("l40s", 362e12),
    ("l40", 181e12),
    ("l4", 121e12),
    ("b200", 2250e12),
)

# jax's TPU device_kind -> our generation name
TPU_KINDS = {
    "tpu v2": "v2",
    "tpu v3": "v3",
    "tpu v4": "v4",
    "tpu v5 lite": "v5e",
    "tpu v5e": "v5e",
    "tpu v5": "v5p",
    "tpu v5p": "v5p",
    "tpu v6 lite": "v6e",
    "tpu v6e": "v6e",
}


def published_peak_flops(platform: str, device_kind: str) -> tuple[float, str] | None:
    """(dense bf16 FLOP/s of one JAX device, where the number comes from) for a known TPU or GPU; None for CPUs and
    chips not in the tables."""
    kind = device_kind.lower().strip()
    if platform == "tpu" and kind in TPU_KINDS:
        generation = GENERATIONS[TPU_KINDS[kind]]
        if generation.peak_bf16_flops:
            return (generation.peak_bf16_flops / generation.devices_per_chip,
                    f"published bf16 peak of a {generation.name} chip")
    if platform == "gpu":
        for name, peak in GPU_PEAKS:
            if name in kind:
                return peak, f"published dense bf16 peak of {device_kind}"
    return None
