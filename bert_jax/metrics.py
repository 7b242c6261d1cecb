"""Training metrics: accumulated on the device, read by the host once per log interval, written to the console,
`WORKDIR/metrics.jsonl` and TensorBoard event files (tensorboardX: no TensorFlow needed).

Per-step metrics stay on the device and are summed there (non-finite steps masked out), so the host reads them once
per `log_every` steps instead of stalling the device every step. Only process 0 writes.

metrics.jsonl holds one JSON object per line: train lines at each logged step
(`"kind": "train"`, `step`, `loss`, `mlm_loss`, `mlm_accuracy`, `nsp_loss`, `nsp_accuracy`, `learning_rate`,
`grad_norm`, `tokens_per_s`, `mfu`, `nonfinite_steps`, ...) and eval lines (`"kind": "eval"`). `step` counts optimizer
steps done. After a resume, lines past the restored step (logged before the interruption and about to be redone) are
removed, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath

log = logging.getLogger("bert_jax")

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_SUMMED = ("mlm_loss_sum", "mlm_correct_sum", "mlm_count", "nsp_loss_sum", "nsp_correct_sum", "nsp_count",
           "loss", "grad_norm")


@jax.jit
def _accumulate(totals: dict[str, jax.Array], step_metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    finite = step_metrics["nonfinite"] == 0
    updated = {name: totals[name] + jnp.where(finite, step_metrics[name], 0.0) for name in _SUMMED}
    updated["finite_steps"] = totals["finite_steps"] + finite.astype(jnp.int32)
    updated["nonfinite_steps"] = totals["nonfinite_steps"] + step_metrics["nonfinite"]
    updated["learning_rate"] = step_metrics["learning_rate"]
    return updated


class IntervalMetrics:
    """Sums the train step's metrics over a log interval without leaving the device."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._totals = None
        self.steps = 0

    def add(self, step_metrics: dict[str, jax.Array]) -> None:
        if self._totals is None:
            zeros = {name: jnp.zeros((), jnp.float32) for name in (*_SUMMED, "learning_rate")}
            zeros.update(finite_steps=jnp.zeros((), jnp.int32), nonfinite_steps=jnp.zeros((), jnp.int32))
            self._totals = zeros
        self._totals = _accumulate(self._totals, step_metrics)
        self.steps += 1

    def read(self) -> dict[str, float]:
        """The interval's means (one device-to-host transfer); resets the interval."""
        totals = {name: float(value) for name, value in jax.device_get(self._totals).items()}
        self.reset()
        finite_steps = max(totals["finite_steps"], 1.0)
        summary = summarize_sums(totals)
        summary.update(
            loss=totals["loss"] / finite_steps,
            grad_norm=totals["grad_norm"] / finite_steps,
            learning_rate=totals["learning_rate"],
            nonfinite_steps=int(totals["nonfinite_steps"]),
        )
        return summary


def summarize_sums(sums: dict[str, float]) -> dict[str, float]:
    """Losses and accuracies from summed counts (the eval loop sums eval_step outputs the same way)."""
    mlm_count, nsp_count = max(sums["mlm_count"], 1.0), max(sums["nsp_count"], 1.0)
    out = dict(
        mlm_loss=sums["mlm_loss_sum"] / mlm_count,
        mlm_accuracy=sums["mlm_correct_sum"] / mlm_count,
        nsp_loss=sums["nsp_loss_sum"] / nsp_count,
        nsp_accuracy=sums["nsp_correct_sum"] / nsp_count,
    )
    out["loss"] = out["mlm_loss"] + out["nsp_loss"]
    return out


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


def _format_rate(tokens_per_s: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if tokens_per_s >= scale:
            return f"{tokens_per_s / scale:.1f}{unit}"
    return f"{tokens_per_s:.0f}"


def console_line(step: int, total_steps: int, record: dict[str, Any]) -> str:
    if record.get("kind") == "eval":
        return (
            f"eval  step {step}/{total_steps} (seq {record['max_seq_length']}, {record['examples']} examples) | "
            f"loss {record['loss']:.4f} | mlm_loss {record['mlm_loss']:.4f} | mlm_acc {record['mlm_accuracy']:.3f} | "
            f"nsp_loss {record['nsp_loss']:.4f} | nsp_acc {record['nsp_accuracy']:.3f}"
        )
    parts = [
        f"step {step}/{total_steps}",
        f"loss {record['loss']:.4f}",
        f"mlm_acc {record['mlm_accuracy']:.3f}",
        f"nsp_acc {record['nsp_accuracy']:.3f}",
        f"lr {record['learning_rate']:.2e}",
        f"gnorm {record['grad_norm']:.3f}",
        f"{_format_rate(record['tokens_per_s'])} tok/s",
        f"MFU {100 * record['mfu']:.1f}%",
        f"ETA {format_duration(record['eta_s'])}",
    ]
    if record.get("nonfinite_steps"):
        parts.append(f"non-finite steps {record['nonfinite_steps']}")
    return " | ".join(parts)


class MetricsWriter:
    """Console, metrics.jsonl and TensorBoard; a no-op on processes other than 0."""

    def __init__(self, workdir: str, *, total_steps: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        # Object stores (gs://) cannot append: the lines go to a local file that flush() copies to the workdir.
        self._remote = epath.Path(workdir) / METRICS_FILE if "://" in str(workdir) else None
        self._path = self._remote and epath.Path(tempfile.mkdtemp(prefix="bert_jax_metrics_")) / METRICS_FILE
        self._path = self._path or epath.Path(workdir) / METRICS_FILE
        if enabled and self._remote is not None and self._remote.exists():
            self._path.write_text(self._remote.read_text())
        self._tensorboard = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(logdir=str(epath.Path(workdir) / TENSORBOARD_DIR))

    def truncate_after(self, step: int) -> None:
        """Drops lines past `step` (from a run that was interrupted after its last checkpoint)."""
        if not self.enabled or not self._path.exists():
            return
        kept = []
        for line in self._path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError):
                continue  # a line torn by a kill: drop it
        self._path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **record}
        with self._path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        prefix = record.get("kind", "train")
        for name, value in record.items():
            if name not in ("step", "kind") and isinstance(value, (int, float)) and math.isfinite(value):
                self._tensorboard.add_scalar(f"{prefix}/{name}", value, step)
        log.info(console_line(step, self.total_steps, record))

    def flush(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.flush()
        if self.enabled and self._remote is not None and self._path.exists():
            self._remote.write_text(self._path.read_text())

    def close(self) -> None:
        self.flush()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
