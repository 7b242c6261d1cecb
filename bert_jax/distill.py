"""CLI: distil a student (DistilBERT) from a frozen BERT-family teacher.

    python -m bert_jax.distill --config configs/distilbert_base_cased.py --teacher SOURCE --workdir DIR
        [--config.FIELD=VALUE ...]

SOURCE is a Hugging Face directory with an MLM head (safetensors) or one of our training workdirs. The run is the
trainer's, with the `distillation` objective (mesh, phases, eval, checkpoints with exact resume, preemption,
logging, export at the end); `--teacher` sets `config.distillation.teacher`. When the teacher is a workdir that
holds no finished run and the config names `distillation.teacher_train` (the tiny variant does), the teacher is
trained there first, or its run resumed. Exit status as `python -m bert_jax.train`.
"""

from __future__ import annotations

import logging
import os
import sys

from bert_jax import train
from bert_jax.errors import ConfigError

PROG = "python -m bert_jax.distill"

log = logging.getLogger("bert_jax")


def _flags(parser) -> None:
    parser.add_argument("--teacher", default=None,
                        help="the teacher: a Hugging Face directory with an MLM head, or a training --workdir "
                        "(default: config.distillation.teacher)")


def main(argv: list[str] | None = None) -> int:
    return train.run_command(PROG, _run, list(sys.argv[1:] if argv is None else argv))


def _run(argv: list[str]) -> int:
    args, overrides = train.parse_args(
        argv, prog=PROG, default_config="distilbert_base_cased:tiny", extra=_flags,
        description="Distil a student from a frozen teacher: the trainer with the distillation objective. Any "
        "--config.FIELD=VALUE argument overrides a config field (e.g. --config.distillation.temperature=4).")
    if args.teacher:
        overrides.append(f"distillation.teacher={args.teacher}")
    train.prepare(args)
    from bert_jax.configuration import load_config
    from bert_jax.training import loop

    config = load_config(args.config, overrides)
    if config.objective != "distillation":
        raise ConfigError(f"{args.config} trains objective {config.objective!r}; distill needs a config with "
                          "objective 'distillation' (e.g. configs/distilbert_base_cased.py)")
    if not ensure_teacher(config):
        return 0  # the teacher's run was preempted (SIGTERM) and saved: the same command resumes it
    result = loop.run(config, args.workdir)
    logging.info("%s at step %d; workdir %s", result.status, result.step, args.workdir)
    return 0


def ensure_teacher(config) -> bool:
    """Trains the teacher first when `distillation.teacher` is a workdir without a finished run and
    `distillation.teacher_train` says how (resuming an interrupted teacher run; a finished one is left as it is).
    False when that training was preempted before it finished."""
    from bert_jax.configuration import load_config
    from bert_jax.training import checkpointing, loop
    from bert_jax.training.workdir import is_run_workdir

    teacher, recipe = config.distillation.teacher, config.distillation.teacher_train
    if not recipe or (os.path.isfile(os.path.join(teacher, "config.json")) and not is_run_workdir(teacher)):
        return True
    teacher_config = load_config(recipe, list(config.distillation.teacher_train_overrides))
    if checkpointing.checkpoint_dir(teacher).exists():
        manager = checkpointing.make_manager(teacher, keep=1, read_only=True)
        latest = manager.latest_step()
        manager.close()
        if latest is not None and latest >= teacher_config.train_steps:
            return True
    log.info("training the teacher first: %s %s in %s", recipe, " ".join(config.distillation.teacher_train_overrides),
             teacher)
    result = loop.run(teacher_config, teacher)
    if result.status != "finished":
        log.warning("the teacher's run in %s stopped at step %d (%s); run the same command again to finish it, then "
                    "the distillation starts", teacher, result.step, result.status)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
