"""CLI: fine-tune a pre-trained encoder with a task head on a GLUE task, a table, CoNLL NER or SWAG.

    python -m bert_jax.finetune --model SOURCE --task TASK --data PATH --workdir DIR [--config.FIELD=VALUE ...]

SOURCE is a Hugging Face directory (config.json, safetensors, vocab.txt or tokenizer.json) or one of our training
workdirs; TASK a GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli; GLUE's folder as --data) or `table`
(--data a directory of train/dev CSV, TSV, JSONL or Parquet files; --config.finetune.text_a/text_b/label_column),
or `squad` / `squad_v2` (extractive question answering; --data holds SQuAD's train and dev JSON files), `conll`
(token classification; CoNLL-2003 text files or a datasets export) or `swag` (multiple choice; SWAG's CSVs).
The run is the trainer's (mesh, checkpoints with exact resume, preemption, logging) with the task's objective
(`classification`; `question_answering`, `token_classification`, `multiple_choice`): evaluation every epoch, the
best parameters by the task's metric exported to WORKDIR/best, the last to WORKDIR/export. Running the same command
again resumes. Exit status as `python -m bert_jax.train`.

--sweep runs the BERT paper's learning rates {5e-5, 4e-5, 3e-5, 2e-5} (or --sweep_learning_rates) x --sweep_seeds
seeds (config.seed + i), each a normal run in WORKDIR/lr<rate>-seed<seed>/, and keeps the best on dev: a table of
every run (printed and in WORKDIR/sweep.json) and the winner's best parameters in WORKDIR/best.
"""

from __future__ import annotations

import logging
import sys

from bert_jax import train

PROG = "python -m bert_jax.finetune"


def _flags(parser) -> None:
    parser.add_argument("--model", required=True, help="the pre-trained encoder: a Hugging Face directory or a "
                        "training --workdir")
    parser.add_argument("--task", required=True, help="cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, table, "
                        "squad, squad_v2, conll or swag")
    parser.add_argument("--data", required=True, help="the task's data folder (GLUE's glue_data/<TASK>, or "
                        "tfds:glue/<task>[@TFDS_DATA_DIR] for a prepared TFDS GLUE dataset; SQuAD's train/dev JSON "
                        "files; CoNLL-2003's files; SWAG's train.csv and val.csv)")
    sweep_flags(parser)


def sweep_flags(parser) -> None:
    """The sweep's flags (shared with `python -m bert_jax.glue`)."""
    group = parser.add_argument_group("learning-rate sweep (the BERT paper's: keeps the best run on dev)")
    group.add_argument("--sweep", action="store_true", help="run every learning rate x seed, each in "
                       "WORKDIR/lr<rate>-seed<seed>/, and copy the best run's best/ to WORKDIR/best (every run's "
                       "result in WORKDIR/sweep.json)")
    group.add_argument("--sweep_learning_rates", default=None, help="comma-separated peak learning rates (default "
                       "the paper's 5e-5,4e-5,3e-5,2e-5); implies --sweep")
    group.add_argument("--sweep_seeds", type=int, default=None, help="seeds per learning rate: config.seed, "
                       "config.seed + 1, ... (default 1); implies --sweep")


def sweep_grid(args) -> tuple[tuple[float, ...], int] | None:
    """(learning rates, seeds per rate) when the flags ask for a sweep, else None."""
    from bert_jax.training import sweep

    if not (args.sweep or args.sweep_learning_rates is not None or args.sweep_seeds is not None):
        return None
    rates = (sweep.parse_rates(args.sweep_learning_rates) if args.sweep_learning_rates is not None
             else sweep.PAPER_LEARNING_RATES)
    return rates, 1 if args.sweep_seeds is None else args.sweep_seeds


def task_overrides(model: str, task: str, data: str) -> list[str]:
    """The config overrides that point a fine-tuning run at its source, task and data."""
    from bert_jax.data import tasks

    return [f"finetune.model={model}", f"finetune.task={task}", f"finetune.data={data}",
            f"objective={tasks.get(task).objective}"]


def run_task(config_path: str, overrides: list[str], workdir: str, grid=None) -> str:
    """One fine-tuning run in `workdir`, or (`grid`: rates and seeds per rate) a sweep of them; its status
    ("finished" or "preempted"). The best parameters are in WORKDIR/best either way."""
    from bert_jax.configuration import load_config
    from bert_jax.training import sweep

    if grid is None:
        result, _ = _run_one(config_path, overrides, workdir)
        logging.info("%s at step %d; workdir %s; last eval %s", result.status, result.step, workdir,
                     result.last_eval)
        return result.status
    rates, seeds = grid
    points = sweep.grid(rates, load_config(config_path, overrides).seed, seeds)

    def run_point(point, run_dir):
        result, config = _run_one(config_path, overrides + point.overrides(), run_dir)
        return sweep.Outcome(result.status, config.eval_every)  # eval_every is one epoch's steps

    return sweep.run(points, run_point, workdir, {"config": config_path, "overrides": overrides}).status


def _run_one(config_path: str, overrides: list[str], workdir: str):
    from bert_jax.configuration import load_config
    from bert_jax.objectives import objective_class
    from bert_jax.training import loop

    config = load_config(config_path, overrides)
    config = objective_class(config.objective).prepare_config(config)
    return loop.run(config, workdir), config


def main(argv: list[str] | None = None) -> int:
    return train.run_command(PROG, _run, list(sys.argv[1:] if argv is None else argv))


def _run(argv: list[str]) -> int:
    args, overrides = train.parse_args(
        argv, prog=PROG, default_config="finetune", extra=_flags,
        description="Fine-tune a pre-trained encoder with a task head: the trainer with the task's objective "
        "(classification; question answering for squad and squad_v2, token classification for conll, multiple "
        "choice for swag). Any --config.FIELD=VALUE argument overrides a config field (e.g. "
        "--config.optimizer.learning_rate=3e-5 --config.finetune.epochs=2).")
    grid = sweep_grid(args)
    overrides += task_overrides(args.model, args.task, args.data)
    train.prepare(args)
    run_task(args.config, overrides, args.workdir, grid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
