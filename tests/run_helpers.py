"""Helpers shared by the tests that run the trainer: the tiny run's config overrides, the command line, the
environment of N emulated devices, and readers of metrics.jsonl and TensorBoard event files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ONE_PHASE = "[{'max_seq_length': 32, 'fraction': 1.0, 'max_predictions': 5}]"  # one compilation: cheaper tests
PHASES = "[{'max_seq_length': 32, 'fraction': 0.5, 'max_predictions': 5}, " \
         "{'max_seq_length': 64, 'fraction': 0.5, 'max_predictions': 10}]"


def overrides(dataset: Path, **fields) -> list[str]:
    """A 1-layer model on the sample data, logging every step so per-step losses can be compared."""
    base = {
        "model.hidden_size": 32, "model.num_hidden_layers": 1, "model.num_attention_heads": 2,
        "model.intermediate_size": 64, "model.max_position_embeddings": 64,
        # Dropout on (the demo's tiny config has none): resume and multi-process tests cover its random stream.
        "model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1,
        "data.dir": str(dataset), "data.build_from": "", "data.worker_count": 0,
        "batch_size": 16, "phases": PHASES, "train_steps": 40, "optimizer.warmup_steps": 4, "optimizer.learning_rate": 3e-3,
        "log_every": 1, "eval_every": 10, "eval_steps": 2, "checkpoint_every": 5,
        "peak_flops_per_device": 1e10, "export_at_end": False,
    }
    base.update(fields)
    return [f"{key}={value}" for key, value in base.items()]


def train_command(workdir: Path, dataset: Path, **fields) -> list[str]:
    return [sys.executable, "-m", "bert_jax.train", "--config", "configs/base_cased.py:tiny", "--workdir",
            str(workdir), *("--config." + o for o in overrides(dataset, **fields))]


def environment(devices: int, **extra) -> dict[str, str]:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    env.update(extra)
    return env


def records(workdir: Path, kind: str = "train") -> dict[int, dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in lines if r["kind"] == kind}


def losses(workdir: Path, kind: str = "train", field: str = "loss") -> dict[int, float]:
    return {step: r[field] for step, r in records(workdir, kind).items()}


def tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Reads the event files as TensorBoard would (TFRecord framing: length, crc, Event proto, crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = event_pb2.Event.FromString(data[offset + 12: offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
