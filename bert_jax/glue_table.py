"""The GLUE results table as the BERT paper (Table 1) and the BERT model cards print it:

    | Task | MNLI-(m/mm) | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE | Average |

each cell the metric the paper reports x 100 with one decimal: MNLI matched/mismatched accuracy, QQP and MRPC F1,
STS-B Spearman correlation, CoLA Matthews correlation, the others accuracy. Average is the mean of every number in
the row (MNLI's two counted separately, as the paper's 79.6 for BERT-base is); WNLI, when run, gets a column after
RTE but is left out of the average, as the paper leaves it out. The values come from each task's best checkpoint's
dev evaluation (best.json), so they are dev-set numbers; the paper's table is GLUE's test server.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Column:
    title: str
    task: str  # our task name (data/tasks)
    metrics: tuple[str, ...]  # eval-record keys shown, "/"-joined (MNLI: matched, mismatched)
    averaged: bool = True


COLUMNS = (
    Column("MNLI-(m/mm)", "mnli", ("accuracy", "dev_mismatched_accuracy")),
    Column("QQP", "qqp", ("f1",)),
    Column("QNLI", "qnli", ("accuracy",)),
    Column("SST-2", "sst2", ("accuracy",)),
    Column("CoLA", "cola", ("matthews_corrcoef",)),
    Column("STS-B", "stsb", ("spearmanr",)),
    Column("MRPC", "mrpc", ("f1",)),
    Column("RTE", "rte", ("accuracy",)),
    Column("WNLI", "wnli", ("accuracy",), averaged=False),
)
NOTE = ("Dev-set numbers (each task's best checkpoint on its dev split, x100); GLUE's leaderboard scores the test "
        "predictions in submission/.")


def summarize(results: dict[str, dict]) -> dict:
    """`results` (task name -> {"status", "eval": the best checkpoint's eval record, "error"}) -> the row: each
    column's values (x100) and cell text, and the average over the averaged columns with values."""
    row, averaged = {}, []
    for column in COLUMNS:
        result = results.get(column.task)
        if result is None:
            if column.averaged:
                row[column.title] = {"cell": "-", "values": []}
            continue
        record = result.get("eval")
        if record is None:
            row[column.title] = {"cell": "failed", "values": []}
            continue
        values = [100.0 * record[name] for name in column.metrics]
        row[column.title] = {"cell": "/".join(f"{value:.1f}" for value in values), "values": values}
        if column.averaged:
            averaged += values
    average = sum(averaged) / len(averaged) if averaged else None
    return {"columns": row, "average": average}


def markdown(summary: dict, model: str, errors: dict[str, str]) -> str:
    """The table, the note that these are dev numbers, and each failed task's error."""
    titles = list(summary["columns"])
    average = "-" if summary["average"] is None else f"{summary['average']:.1f}"
    lines = ["| Task | " + " | ".join(titles) + " | Average |",
             "|" + "---|" * (len(titles) + 2),
             f"| {model} | " + " | ".join(summary["columns"][t]["cell"] for t in titles) + f" | {average} |",
             "", NOTE]
    if errors:
        lines += ["", "Failed:"] + [f"- {task}: {message}" for task, message in errors.items()]
    return "\n".join(lines) + "\n"
