"""Training metrics: accumulated on the device, read by the host once per log interval, written to the console,
`WORKDIR/metrics.jsonl` and TensorBoard event files (tensorboardX: no TensorFlow needed).

Per-step metrics stay on the device and are summed there (non-finite steps masked out), so the host reads them once
per `log_every` steps instead of stalling the device every step. Only process 0 writes.

metrics.jsonl holds one JSON object per line: train lines at each logged step (`"kind": "train"`, `step`, `loss`,
the objective's summaries (e.g. an accuracy), `learning_rate`, `grad_norm`, `tokens_per_s` (at the lengths the
steps ran at), `examples_per_s`, `mfu`, `nonfinite_steps`, ...) and eval lines (`"kind": "eval"`). `step` counts
optimizer steps done. After a resume, lines past the restored step (logged before the interruption and about to
be redone) are removed, so the file reads as one uninterrupted run. The objective decides which summaries exist
(`Objective.summarize`); this module names none.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath

from bert_jax.training.step import CORE_METRICS

log = logging.getLogger("bert_jax")

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# A remote metrics.jsonl is rewritten at the first log line this long after its last upload (and at every
# checkpoint and the end): a line waits at most this plus one log interval, and at most this long once a log
# interval is longer than it, so a remote workdir's metrics are less than a minute old.
REMOTE_UPLOAD_EVERY_S = 30.0
# Step metrics that are read as they are rather than summed over the interval.
_NOT_SUMMED = tuple(name for name in CORE_METRICS if name not in ("loss", "grad_norm"))


@jax.jit
def _accumulate(totals: dict[str, jax.Array], step_metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    finite = step_metrics["nonfinite"] == 0
    updated = {name: totals[name] + jnp.where(finite, value, 0.0)
               for name, value in step_metrics.items() if name not in _NOT_SUMMED}
    updated["finite_steps"] = totals["finite_steps"] + finite.astype(jnp.int32)
    updated["nonfinite_steps"] = totals["nonfinite_steps"] + step_metrics["nonfinite"]
    updated["learning_rate"] = step_metrics["learning_rate"]
    return updated


class IntervalMetrics:
    """Sums the train step's metrics over a log interval without leaving the device."""

    def __init__(self, objective) -> None:
        self.objective = objective
        self.reset()

    def reset(self) -> None:
        self._totals = None
        self.steps = 0

    def add(self, step_metrics: dict[str, jax.Array]) -> None:
        if self._totals is None:
            summed = [name for name in step_metrics if name not in _NOT_SUMMED]
            zeros = {name: jnp.zeros((), jnp.float32) for name in (*summed, "learning_rate")}
            zeros.update(finite_steps=jnp.zeros((), jnp.int32), nonfinite_steps=jnp.zeros((), jnp.int32))
            self._totals = zeros
        self._totals = _accumulate(self._totals, step_metrics)
        self.steps += 1

    def read(self) -> dict[str, float]:
        """The interval's means (one device-to-host transfer); resets the interval."""
        totals = {name: float(value) for name, value in jax.device_get(self._totals).items()}
        self.reset()
        finite_steps = max(totals["finite_steps"], 1.0)
        summary = self.objective.summarize(totals)
        summary.update(
            loss=totals["loss"] / finite_steps,
            grad_norm=totals["grad_norm"] / finite_steps,
            learning_rate=totals["learning_rate"],
            nonfinite_steps=int(totals["nonfinite_steps"]),
        )
        return summary


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


def _format_rate(tokens_per_s: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if tokens_per_s >= scale:
            return f"{tokens_per_s / scale:.1f}{unit}"
    return f"{tokens_per_s:.0f}"


def _label(name: str) -> str:
    return name.replace("_accuracy", "_acc")


def _value(name: str, value: float) -> str:
    return f"{value:.3f}" if name.endswith("accuracy") else f"{value:.4f}"


def console_line(step: int, total_steps: int, record: dict[str, Any], train_metrics: tuple[str, ...] = ()) -> str:
    """One line per logged step: eval lines show every summary of the objective, train lines `loss`, the
    objective's `train_metrics` and the run's rate, MFU and ETA."""
    if record.get("kind") == "eval":
        summaries = [name for name in record if name not in ("step", "kind", "max_seq_length", "examples", "loss")]
        return " | ".join(
            [f"eval  step {step}/{total_steps} (seq {record['max_seq_length']}, {record['examples']} examples)",
             f"loss {record['loss']:.4f}"]
            + [f"{_label(name)} {_value(name, record[name])}" for name in summaries]
        )
    parts = [
        f"step {step}/{total_steps}",
        f"loss {record['loss']:.4f}",
        *(f"{_label(name)} {_value(name, record[name])}" for name in train_metrics),
        f"lr {record['learning_rate']:.2e}",
        f"gnorm {record['grad_norm']:.3f}",
        f"{_format_rate(record['tokens_per_s'])} tok/s",
        *([f"{record['examples_per_s']:.1f} ex/s"] if "examples_per_s" in record else []),
        f"MFU {100 * record['mfu']:.1f}%",
        f"ETA {format_duration(record['eta_s'])}",
    ]
    if record.get("nonfinite_steps"):
        parts.append(f"non-finite steps {record['nonfinite_steps']}")
    return " | ".join(parts)


class MetricsWriter:
    """Console, metrics.jsonl and TensorBoard; a no-op on processes other than 0."""

    def __init__(self, workdir: str, *, total_steps: int, enabled: bool, train_metrics: tuple[str, ...] = ()) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self.train_metrics = train_metrics  # the objective's summaries shown on train lines
        # Object stores (gs://) cannot append: metrics.jsonl and the TensorBoard events go to a local directory
        # whose files are copied to the workdir (`_upload`). tensorboardX's own gs:// writer is not used: it holds
        # the whole event file in memory and uploads it again at exit.
        self._remote = epath.Path(workdir) if "://" in str(workdir) else None
        local = epath.Path(tempfile.mkdtemp(prefix="bert_jax_metrics_")) if self._remote else epath.Path(workdir)
        self._local, self._path = local, local / METRICS_FILE
        if enabled and self._remote is not None and (self._remote / METRICS_FILE).exists():
            self._path.write_text((self._remote / METRICS_FILE).read_text())
        self._uploaded_at = time.monotonic()
        self._tensorboard = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(logdir=str(local / TENSORBOARD_DIR))

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
        log.info(console_line(step, self.total_steps, record, self.train_metrics))
        if self._remote is not None and time.monotonic() - self._uploaded_at >= REMOTE_UPLOAD_EVERY_S:
            self._upload()

    def _upload(self) -> None:
        from bert_jax import storage

        if self._tensorboard is not None:
            self._tensorboard.flush()
        for path in [self._path, *(self._local / TENSORBOARD_DIR).glob("*")]:
            if path.is_file():
                storage.upload_file(str(path), str(self._remote / path.relative_to(self._local)))
        self._uploaded_at = time.monotonic()

    def flush(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.flush()
        if self.enabled and self._remote is not None and self._path.exists():
            self._upload()

    def close(self) -> None:
        tensorboard, self._tensorboard = self._tensorboard, None
        if tensorboard is not None:
            tensorboard.close()
        self.flush()
