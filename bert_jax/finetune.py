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
    parser.add_argument("--data", required=True, help="the task's data folder (GLUE's glue_data/<TASK>; SQuAD's "
                        "train/dev JSON files; CoNLL-2003's files; SWAG's train.csv and val.csv)")


def main(argv: list[str] | None = None) -> int:
    return train.run_command(PROG, _run, list(sys.argv[1:] if argv is None else argv))


def _run(argv: list[str]) -> int:
    args, overrides = train.parse_args(
        argv, prog=PROG, default_config="finetune", extra=_flags,
        description="Fine-tune a pre-trained encoder with a task head: the trainer with the task's objective "
        "(classification; question answering for squad and squad_v2, token classification for conll, multiple "
        "choice for swag). Any --config.FIELD=VALUE argument overrides a config field (e.g. "
        "--config.optimizer.learning_rate=3e-5 --config.finetune.epochs=2).")
    from bert_jax.data import tasks

    task = tasks.get(args.task)
    overrides += [f"finetune.model={args.model}", f"finetune.task={args.task}", f"finetune.data={args.data}",
                  f"objective={task.objective}"]
    train.prepare(args)
    from bert_jax.configuration import load_config
    from bert_jax.objectives import objective_class
    from bert_jax.training import loop

    config = load_config(args.config, overrides)
    config = objective_class(config.objective).prepare_config(config)
    result = loop.run(config, args.workdir)
    logging.info("%s at step %d; workdir %s; last eval %s", result.status, result.step, args.workdir,
                 result.last_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
