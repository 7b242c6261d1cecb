"""CLI and Python API: pre-train a BERT-family encoder with the config's objective (BERT's MLM + NSP by default).

    python -m bert_jax.train --config configs/base_cased.py --workdir DIR [--config.FIELD=VALUE ...]
    bert-jax-train --config base_cased:tiny --workdir DIR          # installed: a bundled config by name

    import bert_jax
    result = bert_jax.train("base_cased:tiny", "runs/tiny", overrides=["train_steps=100"])

`bert_jax.train` is this module, made callable: calling it calls `run` (so `python -m bert_jax.train` and
`from bert_jax import train; train.main(...)` keep working).

Running the same command again resumes from the latest checkpoint in DIR. `--config.init_from=SOURCE` starts a fresh
run from a trained model's weights instead of a random initialisation (docs/training.md). Several hosts (or local
processes): pass --coordinator_address/--num_processes/--process_id, or the BERT_JAX_COORDINATOR_ADDRESS /
BERT_JAX_NUM_PROCESSES / BERT_JAX_PROCESS_ID environment variables; on a Cloud TPU VM none are needed (JAX detects
the slice).
Exit status: 0 when finished or cleanly preempted (SIGTERM), 1 when training failed, 2 for bad configuration/input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types

from bert_jax import errors

_ENV = {
    "coordinator_address": "BERT_JAX_COORDINATOR_ADDRESS",
    "num_processes": "BERT_JAX_NUM_PROCESSES",
    "process_id": "BERT_JAX_PROCESS_ID",
}


PROG = "python -m bert_jax.train"
DESCRIPTION = ("Pre-train a BERT-family encoder on a device mesh with the config's objective (MLM + NSP by default; "
               "--config.objective=mlm for masked LM alone). Any --config.FIELD=VALUE argument overrides a config "
               "field (e.g. --config.train_steps=1000 --config.mesh.fsdp=4); see the config file for all fields. "
               "--config.init_from=hf:DIR (or hf:ORG/NAME in the local Hugging Face cache, or a workdir) continues "
               "pre-training from a trained model, with its architecture and vocab.")


def parse_args(argv: list[str], *, prog: str = PROG, description: str = DESCRIPTION,
               default_config: str = "base_cased:tiny",
               extra=None) -> tuple[argparse.Namespace, list[str]]:
    """The training commands' flags (`extra(parser)` adds a command's own) and the config overrides."""
    from bert_jax.configuration import split_config_overrides

    argv, overrides = split_config_overrides(argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", default=default_config,
                        help="config file or bundled config name, with :variants: configs/base_cased.py:small or "
                             "base_cased:small (default %(default)s)")
    parser.add_argument("--workdir", required=True,
                        help="checkpoints, metrics.jsonl, TensorBoard events and the final export (local or gs://)")
    group = parser.add_argument_group("multi-process (flags win over the BERT_JAX_* environment variables)")
    group.add_argument("--coordinator_address", default=os.environ.get(_ENV["coordinator_address"]),
                       help="HOST:PORT of process 0's coordinator")
    group.add_argument("--num_processes", type=int, default=_env_int("num_processes"))
    group.add_argument("--process_id", type=int, default=_env_int("process_id"))
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv), overrides


def _env_int(name: str) -> int | None:
    value = os.environ.get(_ENV[name])
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.InputError(f"environment variable {_ENV[name]}={value!r} must be an integer") from None


def initialize_distributed(args: argparse.Namespace) -> None:
    """`jax.distributed.initialize` from flags/environment, or auto-detected on TPU VMs and other clusters JAX
    knows; nothing for a plain single process. On CPU, collectives across processes go through gloo."""
    import jax

    given = [args.coordinator_address, args.num_processes, args.process_id]
    if any(value is not None for value in given):
        if any(value is None for value in given):
            raise errors.InputError("multi-process runs need all of --coordinator_address, --num_processes and "
                             "--process_id (or the BERT_JAX_* environment variables)")
        if "cpu" in str(jax.config.jax_platforms or "cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    elif _cluster_detected():
        jax.distributed.initialize()


def _cluster_detected() -> bool:
    try:
        from jax._src import clusters  # no public API says "a cluster JAX can auto-initialise from is present"

        return any(env.is_env_present() for env in clusters.ClusterEnv._cluster_types)
    except (ImportError, AttributeError):
        return "TPU_WORKER_HOSTNAMES" in os.environ


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _run, list(sys.argv[1:] if argv is None else argv))


def run_command(prog: str, body, argv: list[str]) -> int:
    """A training command's exit status: 0 when `body(argv)` finished or was cleanly preempted, 2 with one line for
    a user error, 1 when training failed."""
    try:
        return body(argv)
    except errors.UserError as e:
        return errors.report(prog, e)
    except errors.TrainingError as e:
        print(f"{prog}: stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: the first one saves and exits cleanly
        print(f"{prog}: aborted by a second Ctrl-C without saving; the last checkpoint is kept", file=sys.stderr)
        return 130


def prepare(args) -> None:
    """Logging for a training run and, where asked or detected, `jax.distributed`."""
    # force: importing orbax has already given the root logger a handler, which would make this a no-op.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        force=True)
    # orbax and grain log every save/restore phase at INFO through absl: keep their warnings only.
    logging.getLogger("absl").setLevel(logging.WARNING)
    import jax

    if not jax.distributed.is_initialized():  # a second run() in one process keeps the first's set-up
        initialize_distributed(args)
    if jax.process_index() != 0:
        logging.getLogger().setLevel(logging.WARNING)


def run(config_or_spec, workdir: str, overrides=()):
    """Pre-trains as `python -m bert_jax.train` does and returns the loop's result (`.status` "finished" or
    "preempted", `.step`, `.last_eval`); `bert_jax.train(...)` calls this.

    `config_or_spec`: a ConfigDict (copied; not changed) or a spec string (`configs/base_cased.py:tiny`, or a bundled
    config by name: `base_cased:tiny`). `overrides`: `FIELD=VALUE` strings, as `--config.FIELD=VALUE`. Sets up logging
    like the command (INFO lines on the root logger) and `jax.distributed` from the BERT_JAX_* environment variables
    or a detected cluster. Bad configuration raises `bert_jax.errors.ConfigError`, bad input `InputError`.
    """
    environment = argparse.Namespace(coordinator_address=os.environ.get(_ENV["coordinator_address"]),
                                     num_processes=_env_int("num_processes"), process_id=_env_int("process_id"))
    return _train(config_or_spec, os.fspath(workdir), overrides, environment)


def _run(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    _train(args.config, args.workdir, overrides, args)
    return 0


def _train(config_or_spec, workdir: str, overrides, distributed: argparse.Namespace):
    """The config checked first (nothing is set up for a bad one), then logging and processes, then the loop."""
    from bert_jax.configuration import finish_config, load_config

    if isinstance(config_or_spec, (str, os.PathLike)):
        config = load_config(os.fspath(config_or_spec), overrides)
    else:
        import copy

        config = finish_config(copy.deepcopy(config_or_spec), overrides)
    prepare(distributed)
    from bert_jax.interop import init_from
    from bert_jax.training import loop

    # Setup takes init_from's architecture in any case; here a model field set on the command line that contradicts it
    # is an error rather than replaced.
    init_from.prepare_config(config, init_from.overridden_fields(overrides))
    result = loop.run(config, workdir)
    logging.info("%s at step %d; workdir %s", result.status, result.step, workdir)
    return result


class _CallableModule(types.ModuleType):
    """`bert_jax.train(...)` is `bert_jax.train.run(...)`: the package's documented entry point keeps the module's
    name, which `python -m bert_jax.train` and existing imports of the module need."""

    def __call__(self, config_or_spec, workdir, overrides=()):
        return run(config_or_spec, workdir, overrides)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    sys.exit(main())
