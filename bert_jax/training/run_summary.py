"""What a run says about itself, so it can be seen rather than reconstructed: at the start the resolved config (in the
log and as WORKDIR/config.json) and the parameter count; at the end a summary (steps, wall time, tokens, throughput,
MFU, final eval, checkpoints, export path) in the log and as WORKDIR/summary.json.

Tokens count `batch x sequence length` of every step (padding included, what the device computes), as the log's
`tokens_per_s`; the run's total covers every step from 0, this invocation's only the steps it trained. Throughput and
MFU are this invocation's training steps over the time of its loop (evaluation and checkpoint saves included).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Any

import jax
from etils import epath

from bert_jax import fileio
from bert_jax.training.phases import Phase

log = logging.getLogger("bert_jax")

RUN_CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


def config_dict(config) -> dict:
    """The config as plain JSON values (tuples become lists, the phases' ConfigDicts dicts), as WORKDIR/config.json
    holds it."""
    def plain(value):
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return json.loads(json.dumps(plain(config), default=str))


def parameter_count(abstract_params) -> int:
    """Trained parameters (a frozen teacher's are not among them)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(abstract_params))


def _write_json(workdir: str, name: str, data: dict) -> None:
    path = epath.Path(workdir) / name
    if "://" not in str(workdir):
        path.parent.mkdir(parents=True, exist_ok=True)
    fileio.write_text_anywhere(str(path), json.dumps(data, indent=2) + "\n")  # atomic locally, one object on gs://


def announce(config, run_setup, workdir: str, is_chief: bool) -> None:
    """Logs the resolved config and the parameter count; process 0 writes WORKDIR/config.json."""
    resolved = config_dict(config)
    # One line (the file has it indented): log scanners and `grep` see one record per event.
    log.info("config (resolved, also in %s): %s", RUN_CONFIG_FILE, json.dumps(resolved, sort_keys=True))
    log.info("model: %s, %s trainable parameters", run_setup.model_config.model_type,
             f"{parameter_count(run_setup.abstract_state.params):,}")
    if is_chief:
        _write_json(workdir, RUN_CONFIG_FILE, resolved)


@dataclasses.dataclass
class RunSummary:
    status: str  # "finished" or "preempted"
    steps: int  # the step the run is at
    steps_this_run: int  # steps this invocation trained (fewer than `steps` after a resume)
    wall_s: float  # this invocation, setup and compilation included
    tokens: int  # tokens of every step from 0 to `steps`
    tokens_this_run: int
    tokens_per_s: float  # this invocation's tokens over its loop time
    mfu: float  # this invocation's model FLOPs over its loop time and the mesh's peak
    final_eval: dict | None
    checkpoints: list[int]  # the steps kept in `checkpoint_dir`
    checkpoint_dir: str
    export: str | None  # WORKDIR/export when it was written
    chance: dict[str, float] = dataclasses.field(default_factory=dict)  # uniform guessing's score per eval metric

    def lines(self) -> list[str]:
        from bert_jax.training.metrics import format_duration

        resumed = f" ({self.steps_this_run:,} in this run)" if self.steps_this_run != self.steps else ""
        lines = [f"run summary ({self.status}):",
                 f"  steps       {self.steps:,}{resumed}",
                 f"  wall time   {format_duration(self.wall_s)}",
                 f"  tokens      {self.tokens:,} ({self.tokens_this_run:,} in this run)",
                 f"  throughput  {self.tokens_per_s:,.0f} tokens/s",
                 f"  MFU         {100 * self.mfu:.1f}%"]
        if self.final_eval:
            values = ", ".join(f"{name} {value:.4f}" + (f" (chance {self.chance[name]:.4g})" if name in self.chance
                                                         else "")
                               for name, value in self.final_eval.items()
                               if name not in ("step", "kind", "max_seq_length", "examples")
                               and isinstance(value, float))
            lines.append(f"  final eval  step {self.final_eval.get('step')}: {values}")
        lines.append(f"  checkpoints {self.checkpoints} in {self.checkpoint_dir}")
        lines.append(f"  export      {self.export or 'none (export_at_end is off)'}")
        return lines


def tokens_between(plan: list[Phase], batch_size: int, start: int, end: int) -> int:
    """Tokens of the steps [start, end): each phase's steps in the range times batch x its sequence length."""
    return sum(max(min(end, p.end) - max(start, p.start), 0) * batch_size * p.max_seq_length for p in plan)


def summarize(*, status: str, config, plan: list[Phase], start_step: int, end_step: int, wall_s: float,
              loop_s: float, tokens_this_run: int, flops_this_run: float, peak_flops: float,
              final_eval: dict[str, Any] | None, checkpoints: list[int], checkpoint_dir: str,
              export: str | None, chance: dict[str, float] | None = None) -> RunSummary:
    """`tokens_this_run` and `flops_this_run` are counted at the lengths the steps ran at (`CompiledSteps`); the
    steps before a resume are counted at their phase's full length. `loop_s` excludes compilation."""
    loop_s = max(loop_s, 1e-9)
    return RunSummary(status=status, steps=end_step, steps_this_run=end_step - start_step, wall_s=wall_s,
                      tokens=tokens_between(plan, config.batch_size, 0, start_step) + tokens_this_run,
                      tokens_this_run=tokens_this_run,
                      tokens_per_s=tokens_this_run / loop_s, mfu=flops_this_run / loop_s / peak_flops,
                      final_eval=dict(final_eval) if final_eval else None, checkpoints=sorted(checkpoints),
                      checkpoint_dir=checkpoint_dir, export=export, chance=dict(chance or {}))


def report(summary: RunSummary, workdir: str, is_chief: bool) -> None:
    """The summary in the log and, from process 0, as WORKDIR/summary.json."""
    log.info("\n".join(summary.lines()))
    if is_chief:
        _write_json(workdir, SUMMARY_FILE, dataclasses.asdict(summary))
