"""CLI: a run's curves as a picture, because people would rather look than read.

    python -m bert_jax.report WORKDIR [--output DIR]

Reads WORKDIR/metrics.jsonl (train and eval lines, see training/metrics.py) and draws one panel per quantity: the
loss, each metric the objective logged (MLM and NSP accuracy for pre-training; the task's metrics for fine-tuning;
the distillation losses), and the learning rate, train and eval on the same axes, with a dotted line where a phase
begins. Writes DIR/report.png and DIR/report.html (the picture and a table of the final values); DIR defaults to
WORKDIR/report. Works for pre-training, fine-tuning and distillation workdirs alike: it plots whatever exists.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path

from etils import epath

from bert_jax import errors
from bert_jax.errors import InputError

PROG = "python -m bert_jax.report"
METRICS_FILE = "metrics.jsonl"
PNG_FILE, HTML_FILE = "report.png", "report.html"
# Fields of a metrics line that are bookkeeping or speed, not the model's quality: not plotted.
NOT_PLOTTED = ("step", "kind", "phase", "eta_s", "step_s", "tokens_per_s", "examples_per_s", "mfu", "grad_norm",
               "nonfinite_steps", "max_seq_length", "examples")


def read_metrics(workdir: str) -> list[dict]:
    """The lines of WORKDIR/metrics.jsonl; a missing or empty file, or a line that is not JSON, is an InputError."""
    path = epath.Path(workdir) / METRICS_FILE
    if not path.exists():
        raise InputError(f"{path} does not exist: is {workdir} a training workdir? Train with python -m "
                         "bert_jax.train --workdir DIR first (metrics.jsonl is written from the first logged step)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise InputError(f"{path} line {number}: not JSON ({error}); remove the line") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise InputError(f"{path} line {number}: a metrics line is an object with an integer step")
        records.append(record)
    if not records:
        raise InputError(f"{path} is empty: the run logged no step yet; wait for the first log_every steps")
    return records


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def series(records: list[dict]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{metric: {"train" | "eval": (steps, values)}} of every plottable metric, the learning rate included."""
    found: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for record in records:
        kind = record.get("kind", "train")
        for name, value in record.items():
            if _numeric(value) and name not in NOT_PLOTTED:
                steps, values = found.setdefault(name, {}).setdefault(kind, ([], []))
                steps.append(record["step"])
                values.append(float(value))
    return found


def panels(found: dict) -> list[tuple[str, list[str]]]:
    """(title, metrics drawn in it): the losses together, then each other metric alone, the learning rate last."""
    losses = sorted((name for name in found if name == "loss" or name.endswith("_loss")), key=lambda n: n != "loss")
    others = sorted(name for name in found if name not in losses and name != "learning_rate")
    result = [("loss", losses)] if losses else []
    result += [(name, [name]) for name in others]
    if "learning_rate" in found:
        result.append(("learning_rate", ["learning_rate"]))
    return result


def phase_starts(records: list[dict]) -> list[int]:
    """The first logged step of each phase after the first (train lines carry their phase)."""
    starts, previous = [], None
    for record in sorted((r for r in records if r.get("kind", "train") == "train" and "phase" in r),
                         key=lambda r: r["step"]):
        if previous is not None and record["phase"] != previous:
            starts.append(record["step"])
        previous = record["phase"]
    return starts


def build_figure(records: list[dict]):
    """The figure (matplotlib, Agg): one axes per panel, titled with its metric."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    found = series(records)
    layout = panels(found)
    if not layout:
        raise InputError("metrics.jsonl holds no numeric metric to plot")
    columns = min(3, len(layout))
    rows = math.ceil(len(layout) / columns)
    figure = Figure(figsize=(5 * columns, 3.4 * rows), layout="constrained")
    boundaries = phase_starts(records)
    for index, (title, names) in enumerate(layout):
        axes = figure.add_subplot(rows, columns, index + 1)
        for name in names:
            for kind, (steps, values) in sorted(found[name].items(), key=lambda item: item[0] != "train"):
                style = dict(marker="o", markersize=3, linestyle="--") if kind == "eval" else dict(linewidth=1)
                label = kind if len(names) == 1 else f"{kind} {name}"
                axes.plot(steps, values, label=label, **style)
        for step in boundaries:
            axes.axvline(step, color="grey", linestyle=":", linewidth=1)
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    figure.suptitle(f"{len(boundaries) + 1} phase(s)" if boundaries else "")
    return figure


def final_values(records: list[dict]) -> list[tuple[str, str, int, float]]:
    """(metric, kind, step, value) of the last line of each kind that has the metric."""
    last: dict[tuple[str, str], tuple[int, float]] = {}
    for record in records:
        for name, value in record.items():
            if _numeric(value) and name not in NOT_PLOTTED:
                last[(name, record.get("kind", "train"))] = (record["step"], float(value))
    return [(name, kind, step, value) for (name, kind), (step, value) in sorted(last.items())]


def html_page(workdir: str, records: list[dict]) -> str:
    rows = "\n".join(f"<tr><td>{html.escape(name)}</td><td>{kind}</td><td>{step}</td><td>{value:.6g}</td></tr>"
                     for name, kind, step, value in final_values(records))
    title = html.escape(f"bert_jax run {workdir}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:0.2em 0.6em;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>{title}</h1>
<img src="{PNG_FILE}" alt="loss, metrics and learning rate by step" style="max-width:100%">
<h2>Final values</h2>
<table><tr><th>metric</th><th>kind</th><th>step</th><th>value</th></tr>
{rows}
</table></body></html>
"""


def write_report(workdir: str, output: str | None = None) -> tuple[epath.Path, epath.Path]:
    """Writes report.png and report.html into `output` (default WORKDIR/report); returns their paths."""
    import io

    records = read_metrics(workdir)
    figure = build_figure(records)
    out = epath.Path(output) if output else epath.Path(workdir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    png, page = out / PNG_FILE, out / HTML_FILE
    png.write_bytes(buffer.getvalue())
    page.write_text(html_page(workdir, records))
    return png, page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Draw a run's loss, metrics and learning-rate curves "
                                     "(train and eval, across phases) from WORKDIR/metrics.jsonl to a PNG and a "
                                     "small HTML page.")
    parser.add_argument("workdir", help="a training, fine-tuning or distillation --workdir (local or gs://)")
    parser.add_argument("--output", default=None, help="directory for report.png and report.html "
                        "(default WORKDIR/report)")
    args = parser.parse_args(argv)
    try:
        png, page = write_report(args.workdir, args.output)
    except errors.UserError as error:
        return errors.report(PROG, error)
    print(f"wrote {png} and {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
