"""CLI: fine-tune an encoder on every GLUE task present, print the BERT paper's table and write GLUE submission files.

    python -m bert_jax.glue --model SOURCE --data glue_data/ --workdir DIR [--tasks CoLA,SST-2,...]
        [--sweep [--sweep_learning_rates 5e-5,3e-5] [--sweep_seeds N]] [--config.FIELD=VALUE ...]

--data is GLUE's folder as distributed (glue_data/<TASK>/ for CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE,
WNLI; every task folder present is run, or --tasks) or `tfds:glue@TFDS_DATA_DIR` (the prepared TFDS glue/<task>
datasets there). Each task is `python -m bert_jax.finetune` (or its --sweep) in DIR/<TASK>/ with the same config and
overrides; running the command again resumes and skips what is done. At the end: the table (dev-set numbers of each
task's best checkpoint) printed and saved to DIR/results.md and DIR/results.json, and for every task with a test
split its predictions in DIR/submission/<TASK>.tsv (MNLI-m, MNLI-mm; AX.tsv from glue_data/diagnostic/diagnostic.tsv
with the MNLI model). A task that fails is reported in the table and the others go on; the exit status is then 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from bert_jax import errors, fileio, finetune, train

PROG = "python -m bert_jax.glue"
GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
DIAGNOSTIC_FILE = Path("diagnostic") / "diagnostic.tsv"  # GLUE's AX set, predicted with the MNLI model
SUBMISSION_DIR = "submission"

log = logging.getLogger("bert_jax")


def _flags(parser) -> None:
    parser.add_argument("--model", required=True, help="the pre-trained encoder: a Hugging Face directory or a "
                        "training --workdir")
    parser.add_argument("--data", required=True, help="GLUE's glue_data folder (a sub-folder per task: CoLA, SST-2, "
                        "MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI), or tfds:glue@TFDS_DATA_DIR")
    parser.add_argument("--tasks", default="", help="comma-separated tasks to run (GLUE's names, e.g. "
                        "CoLA,SST-2,MNLI; default: every task found in --data)")
    finetune.sweep_flags(parser)


def main(argv: list[str] | None = None) -> int:
    return train.run_command(PROG, _run, list(sys.argv[1:] if argv is None else argv))


def task_data(data: str, task) -> str:
    """The --data of one task: its folder, or its TFDS config."""
    if data.startswith("tfds:"):
        return f"tfds:glue/{task.name}@{data.partition('@')[2]}" if "@" in data else f"tfds:glue/{task.name}"
    return str(Path(data) / task.directory)


def select_tasks(data: str, requested: str) -> list:
    """The GLUE tasks to run, in GLUE's order: those asked for (each must be present), else every one present."""
    from bert_jax.data import tasks

    every = [tasks.get(name) for name in GLUE_TASKS]
    present = [task for task in every if _present(data, task)]
    if requested:
        asked = {tasks.get(name.strip()).name for name in requested.split(",") if name.strip()}
        unknown = sorted(asked - set(GLUE_TASKS))
        if unknown:
            raise errors.InputError(f"--tasks: {unknown} are not GLUE tasks; GLUE's are "
                                    f"{', '.join(t.directory for t in every)}")
        missing = [task.directory for task in every if task.name in asked and task not in present]
        if missing:
            raise errors.InputError(f"--tasks: {missing} not found in {data} (expected {task_data(data, every[0])} "
                                    "and the like); check --data or leave them out of --tasks")
        return [task for task in present if task.name in asked]
    if not present:
        raise errors.InputError(f"no GLUE task found in --data {data}: expected sub-folders named "
                                f"{', '.join(t.directory for t in every)} (GLUE's glue_data layout)")
    return present


def _present(data: str, task) -> bool:
    if data.startswith("tfds:"):  # a prepared TFDS config is a folder glue/<config> in the data dir
        data_dir = data.partition("@")[2] or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")  # TFDS's default
        return (Path(data_dir).expanduser() / "glue" / task.name).is_dir()
    return (Path(data) / task.directory).is_dir()


def _run(argv: list[str]) -> int:
    args, overrides = train.parse_args(
        argv, prog=PROG, default_config="finetune", extra=_flags,
        description="Fine-tune a pre-trained encoder on every GLUE task present (python -m bert_jax.finetune per "
        "task, in WORKDIR/<TASK>; a local directory), print the results table (dev-set numbers) and write GLUE "
        "submission files. Any "
        "--config.FIELD=VALUE argument overrides a config field of every task's run.")
    if "://" in args.workdir:
        raise errors.InputError(f"--workdir {args.workdir}: the GLUE runner writes its table and submission files "
                                "locally; pass a local directory")
    grid = finetune.sweep_grid(args)
    selected = select_tasks(args.data, args.tasks)
    train.prepare(args)
    from bert_jax.configuration import load_config

    max_seq_length = load_config(args.config, overrides).phases[0].max_seq_length
    workdir = Path(args.workdir)
    results, failures = {}, {}
    for number, task in enumerate(selected, 1):
        log.info("GLUE task %d of %d: %s", number, len(selected), task.directory)
        try:
            status = finetune.run_task(args.config, overrides + finetune.task_overrides(
                args.model, task.name, task_data(args.data, task)), str(workdir / task.directory), grid)
            if status != "finished":
                log.info("stopped (%s) in %s: run the same command again to continue", status, task.directory)
                return 0
            best = json.loads((workdir / task.directory / "best" / "best.json").read_text())
            results[task.name] = {"status": "finished", "best": best, "eval": best["eval"]}
            results[task.name]["submission"] = _submit(task, args.data, workdir, max_seq_length)
        except Exception as error:  # noqa: BLE001 - one task's failure is reported and the others go on
            if not isinstance(error, errors.UserError):
                log.exception("GLUE task %s failed", task.directory)
            failures[task.directory] = _one_line(error)
            results.setdefault(task.name, {})
            results[task.name].update(status="failed", error=failures[task.directory])
    _report(results, failures, args.model, workdir)
    return 1 if failures else 0


def _submit(task, data: str, workdir: Path, max_seq_length: int) -> list[str]:
    """The task's test predictions in DIR/submission/ (and AX.tsv after MNLI); the files written."""
    from bert_jax import glue_submission

    test_splits = task.read_test(task_data(data, task))
    diagnostic = Path(data) / DIAGNOSTIC_FILE
    wants_ax = task.name == "mnli" and not data.startswith("tfds:") and diagnostic.is_file()
    if not test_splits and not wants_ax:
        return []
    predictor = glue_submission.Predictor(workdir / task.directory / "best", max_seq_length)
    out = workdir / SUBMISSION_DIR
    written = glue_submission.write_task(task, test_splits, predictor, out)
    if wants_ax:
        ax = task.read_test_file(diagnostic)
        written.append(glue_submission.write(out / f"{glue_submission.DIAGNOSTIC_NAME}.tsv", ax.indices,
                                             predictor.predictions(ax.examples)))
    return [str(path) for path in written]


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, errors.UserError) else f"{type(error).__name__}: {text}"


def _report(results: dict, failures: dict, model: str, workdir: Path) -> None:
    """The table printed and saved (results.md), with every task's result (results.json)."""
    from bert_jax import glue_table

    summary = glue_table.summarize(results)
    path = Path(model.rstrip("/"))
    # The row's label: the model's folder, with its parent when the folder's name says nothing (model, export, best).
    name = f"{path.parent.name}/{path.name}" if path.name in ("model", "export", "best") else (path.name or model)
    text = glue_table.markdown(summary, name, failures)
    print(text, flush=True)
    workdir.mkdir(parents=True, exist_ok=True)
    fileio.write_text(workdir / "results.md", text)
    fileio.write_json(workdir / "results.json", {"model": model, "note": glue_table.NOTE, "table": summary,
                                                 "tasks": results}, indent=2)
    log.info("GLUE results in %s (results.md, results.json)%s", workdir,
             f"; {len(failures)} task(s) failed: {', '.join(failures)}" if failures else "")


if __name__ == "__main__":
    sys.exit(main())
