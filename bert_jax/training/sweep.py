"""A learning-rate x seed sweep of a run that keeps its best parameters (`training/best.py`), as the BERT paper
chooses a fine-tuning run: every point is a normal run in WORKDIR/lr<rate>-seed<seed>/ (its own checkpoints, exact
resume), run one after another; the point with the best dev value of the run's best metric wins and its `best/` is
copied to WORKDIR/best. WORKDIR/sweep.json lists every run (rate, seed, best value, step, epoch) and the winner.

A finished point leaves WORKDIR/<point>/sweep_run.json; running the sweep again skips it (when the command's
arguments are the same) and resumes an interrupted one, so an interrupted sweep is continued by the same command.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Callable, Sequence

from etils import epath

from bert_jax.errors import InputError, TrainingError
from bert_jax.training.best import BEST_DIR, BEST_FILE, write_json

log = logging.getLogger("bert_jax")

PAPER_LEARNING_RATES = (5e-5, 4e-5, 3e-5, 2e-5)  # Devlin et al. 2018, appendix A.3
DONE_FILE = "sweep_run.json"
SWEEP_FILE = "sweep.json"


@dataclasses.dataclass(frozen=True)
class Point:
    learning_rate: float
    seed: int

    @property
    def name(self) -> str:
        """The run's directory: `lr3e-5-seed42`."""
        return f"lr{format_rate(self.learning_rate)}-seed{self.seed}"

    def overrides(self) -> list[str]:
        """The config overrides that make a run this point."""
        return [f"optimizer.learning_rate={self.learning_rate!r}", f"seed={self.seed}"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # the run's: "finished" or "preempted"
    steps_per_epoch: int  # to report the best step as an epoch


@dataclasses.dataclass(frozen=True)
class SweepResult:
    status: str  # "finished", or "preempted" (the sweep stopped at an interrupted run)
    runs: list[dict]  # one row per finished run (sweep.json's "runs")
    winner: dict | None


def format_rate(rate: float) -> str:
    """5e-05 -> "5e-5", 0.001 -> "1e-3", 2.5e-05 -> "2.5e-5": the paper's notation, for names and tables."""
    mantissa, exponent = f"{rate:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def parse_rates(text: str) -> tuple[float, ...]:
    """`5e-5,3e-5` -> (5e-05, 3e-05); anything else is an error naming the flag."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--sweep_learning_rates {text!r}: expected comma-separated numbers, e.g. 5e-5,3e-5") from None
    if not rates or any(rate <= 0 for rate in rates) or len(set(rates)) != len(rates):
        raise InputError(f"--sweep_learning_rates {text!r}: give distinct positive learning rates, e.g. 5e-5,3e-5")
    return rates


def grid(rates: Sequence[float], base_seed: int, seeds: int) -> list[Point]:
    """Every rate with seeds base_seed, base_seed + 1, ..., rate-major (the paper's order)."""
    if seeds < 1:
        raise InputError(f"--sweep_seeds {seeds}: the sweep needs at least one seed per learning rate")
    return [Point(rate, base_seed + i) for rate in rates for i in range(seeds)]


def run(points: Sequence[Point], run_point: Callable[[Point, str], Outcome], workdir: str,
        signature: dict) -> SweepResult:
    """Runs (or skips, when finished with the same `signature`: the command's arguments) every point in
    WORKDIR/<point>/, then writes sweep.json and copies the winner's best/ to WORKDIR/best."""
    import jax

    is_chief = jax.process_index() == 0  # every process runs each point; one writes the sweep's own files
    root = epath.Path(workdir)
    rows = []
    for number, point in enumerate(points, 1):
        run_dir = root / point.name
        done_file = run_dir / DONE_FILE
        done = json.loads(done_file.read_text()) if done_file.exists() else None
        if done is not None and done["signature"] == signature:
            log.info("sweep run %d of %d (learning rate %s, seed %d) finished earlier in %s: skipped", number,
                     len(points), format_rate(point.learning_rate), point.seed, run_dir)
        else:
            log.info("sweep run %d of %d: learning rate %s, seed %d, in %s", number, len(points),
                     format_rate(point.learning_rate), point.seed, run_dir)
            outcome = run_point(point, str(run_dir))
            if outcome.status != "finished":
                log.info("sweep stopped at run %d of %d (%s): run the same command again to continue", number,
                         len(points), outcome.status)
                return SweepResult(outcome.status, rows, None)
            done = {"signature": signature, "steps_per_epoch": outcome.steps_per_epoch}
            if is_chief:
                write_json(done_file, done)
        rows.append(_row(point, run_dir, done["steps_per_epoch"]))
    winner = max(rows, key=lambda row: row["value"])  # the first of equals: the paper's order of rates
    if is_chief:
        _copy_best(root / winner["run"] / BEST_DIR, root / BEST_DIR, winner["run"])
        write_json(root / SWEEP_FILE, {"metric": winner["metric"], "runs": rows, "winner": winner["run"]})
        print(table(rows, winner["run"]), flush=True)
    log.info("sweep winner %s: %s %.4f at epoch %g; its best parameters copied to %s", winner["run"],
             winner["metric"], winner["value"], winner["epoch"], root / BEST_DIR)
    return SweepResult("finished", rows, winner)


def _row(point: Point, run_dir: epath.Path, steps_per_epoch: int) -> dict:
    best_file = run_dir / BEST_DIR / BEST_FILE
    if not best_file.exists():
        raise TrainingError(f"the sweep run {run_dir} finished without {BEST_DIR}/{BEST_FILE}: its objective names no "
                            "best metric, so the sweep cannot compare runs")
    best = json.loads(best_file.read_text())
    return {"run": point.name, "learning_rate": point.learning_rate, "seed": point.seed, "metric": best["metric"],
            "value": best["value"], "step": best["step"], "epoch": round(best["step"] / steps_per_epoch, 2)}


def table(rows: list[dict], winner: str) -> str:
    """The sweep as a markdown table, the winner marked."""
    metric = rows[0]["metric"]
    lines = [f"| learning rate | seed | best dev {metric} | at epoch | step | |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {format_rate(row['learning_rate'])} | {row['seed']} | {row['value']:.4f} | {row['epoch']:g} "
                     f"| {row['step']} | {'best' if row['run'] == winner else ''} |")
    return "\n".join(lines)


def _copy_best(source: epath.Path, target: epath.Path, run_name: str) -> None:
    """Replaces `target` with a copy of the winner's export (a flat directory); its best.json names the run. The
    copy is made beside the target first, so an interrupted copy never leaves a half-written best/."""
    partial = target.parent / f"{target.name}.partial"
    if partial.exists():
        partial.rmtree()
    partial.mkdir(parents=True)
    for path in source.iterdir():
        if path.name != BEST_FILE:
            path.copy(partial / path.name)
    best = json.loads((source / BEST_FILE).read_text())
    write_json(partial / BEST_FILE, {**best, "run": run_name})
    if target.exists():
        target.rmtree()
    partial.rename(target)

