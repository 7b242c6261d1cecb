"""Command line of `python -m bert_jax.launch`: one subcommand per step of a Cloud TPU job.

    python -m bert_jax.launch up     --name bert-base --zone us-central2-b --accelerator_type v4-32 \\
        [--provisioning spot]
    python -m bert_jax.launch run    --name bert-base --zone us-central2-b --accelerator_type v4-32 \\
        --config configs/base_cased.py --workdir gs://BUCKET/runs/base --data gs://BUCKET/data/base_cased \\
        [--env HF_TOKEN] [--config.FIELD=VALUE ...]
    python -m bert_jax.launch status --name bert-base --zone us-central2-b
    python -m bert_jax.launch logs   --name bert-base --zone us-central2-b [--worker 0|N|all] [--follow]
    python -m bert_jax.launch stop   --name bert-base --zone us-central2-b
    python -m bert_jax.launch down   --name bert-base --zone us-central2-b
    python -m bert_jax.launch watch  (the flags of up and run) [--max_restarts 5]

Every subcommand takes --dry-run: the gcloud commands are printed, one per line, instead of run.
Input is checked before anything is created; errors name the flag or config field and the fix (exit code 2).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence

from bert_jax.configuration import split_config_overrides
from bert_jax.errors import ConfigError, InputError, report
from bert_jax.launch import accelerators, commands, gcloud, remote, secrets
from bert_jax.launch.errors import LaunchError
from bert_jax.launch.jobs import Job, training_spec
from bert_jax.launch.runner import Runner, check_gcloud_ready
from bert_jax.launch.wheel import project_root

_DESCRIPTIONS = {
    "up": "Create the TPU slice (a queued resource by default) unless it exists, and wait until it is ready.",
    "run": "Build a wheel of this checkout, ship it and the config to every worker, install, and start "
    "`python -m bert_jax.train` on all workers at once, detached, logging to bert_jax_job/train.log on each.",
    "status": "Show the slice's state and training's state on every worker.",
    "logs": "Print (or follow) the training log of one worker or of all.",
    "stop": "Send SIGTERM to training on every worker (it checkpoints and exits); the slice stays up.",
    "down": "Delete the slice (queued resource and node) and wait until it is gone.",
    "watch": "Keep the job alive: create and run if needed, then poll; recreate and rerun after a preemption or "
    "suspension (training resumes from the last checkpoint in --workdir), up to --max_restarts times.",
}


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where")
    group.add_argument("--name", required=True, help="TPU (and queued resource) name, e.g. bert-base-v4")
    group.add_argument("--zone", required=True, help="zone, e.g. us-central2-b (v4) or us-west4-a (v5e)")
    group.add_argument("--project", default=None, help="project ID (default: gcloud's configured project)")
    group.add_argument("--queued", action=argparse.BooleanOptionalAction, default=True,
                       help="create the slice as a queued resource (waits for capacity; default) or directly as a "
                       "TPU VM (--no-queued); other subcommands find out which exists by themselves")
    group.add_argument("--internal_ip", action="store_true",
                       help="reach workers over internal IPs (when launching from a VM in the same network)")
    group.add_argument("--remote_dir", default=remote.DEFAULT_REMOTE_DIR,
                       help="job directory on each worker, relative to the home directory (default %(default)s)")
    group.add_argument("--poll_seconds", type=float, default=30.0,
                       help="seconds between state checks while waiting or watching (default %(default)s)")
    group.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                       help="print each gcloud command instead of running it")
    group.add_argument("--verbose", "-v", action="store_true",
                       help="also echo the read-only commands (describe, state checks) as they run")


def _slice(parser: argparse.ArgumentParser, creates: bool) -> None:
    group = parser.add_argument_group("slice")
    group.add_argument("--accelerator_type", required=creates, default=None,
                       help="e.g. v4-32 (16 chips, 4 workers), v5litepod-16 (16 chips, 4 workers), v5p-32"
                       + ("" if creates else "; optional here (run: checks that the config's mesh and batch fit "
                          "the slice; logs: the number of workers to follow)"))
    if not creates:
        return
    group.add_argument("--runtime_version", default=None,
                       help="TPU software version (default: tpu-ubuntu2204-base for v2-v4, v2-alpha-tpuv5-lite for "
                       "v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e)")
    group.add_argument("--provisioning", choices=gcloud.PROVISIONING_MODELS, default="on-demand",
                       help="on-demand, spot (cheaper, preemptible: use watch) or reserved (default %(default)s)")
    group.add_argument("--wait_timeout", type=float, default=24 * 3600.0,
                       help="seconds to wait for the slice to become ready (default %(default)s)")


def _training(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (also: --config.FIELD=VALUE overrides, passed to every worker)")
    group.add_argument("--config", default="base_cased",
                       help="config file or bundled config name[:variants] (default %(default)s); shipped with its "
                            "sibling *.py files")
    group.add_argument("--workdir", required=True,
                       help="gs://BUCKET/PATH for checkpoints and metrics; rerunning resumes from it")
    group.add_argument("--data", default=None,
                       help="gs:// dataset (python -m bert_jax.data.build output) copied to each worker's disk; "
                       "sets config.data.dir (default: config.data.dir as it is)")
    group.add_argument("--env", action="append", default=[], metavar="NAME",
                       help="environment variable to pass to training, value taken from this shell, never printed "
                       "(repeatable), e.g. --env HF_TOKEN")
    group.add_argument("--wheel", default=None, help="ship this wheel instead of building one from the checkout")
    group.add_argument("--extras", default="tpu", help="extras to install with the wheel (default %(default)s)")
    group.add_argument("--packages", default="gcsfs",
                       help="comma-separated packages to install next to the wheel; gcsfs lets orbax and the "
                       "metrics writer use gs:// paths (default %(default)s; '' for none)")
    group.add_argument("--python", dest="python_version", default="3.12",
                       help="Python version of the workers' venv (default %(default)s)")
    group.add_argument("--constraints", default=None,
                       help="pinned versions to install with (default: constraints.txt of the checkout, if any)")
    group.add_argument("--allow_local_workdir", action="store_true",
                       help="accept a --workdir that is not gs:// (only for a path all workers share, e.g. NFS)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.launch",
        description="Run bert_jax pre-training on Cloud TPU VMs through the gcloud CLI.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ("up", "run", "status", "logs", "stop", "down", "watch"):
        sub = subparsers.add_parser(name, help=_DESCRIPTIONS[name], description=_DESCRIPTIONS[name])
        _common(sub)
        if name in ("up", "watch"):
            _slice(sub, creates=True)
        elif name in ("run", "logs"):
            _slice(sub, creates=False)
        if name in ("run", "watch"):
            _training(sub)
        if name == "logs":
            sub.add_argument("--worker", default="0", help="worker index or 'all' (default %(default)s)")
            sub.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C ends)")
            sub.add_argument("--lines", type=int, default=100, help="lines of history (default %(default)s)")
            sub.add_argument("--env", action="append", default=[], metavar="NAME",
                             help="mask the values of these variables in the output, as run does")
        if name == "stop":
            sub.add_argument("--timeout", type=int, default=600,
                             help="seconds to let training checkpoint after SIGTERM before SIGKILL "
                             "(default %(default)s)")
        if name == "watch":
            sub.add_argument("--max_restarts", type=int, default=5,
                             help="recoveries (recreate + rerun) before giving up (default %(default)s)")
            sub.add_argument("--finish_grace", type=float, default=120.0,
                             help="after training exits 0 on a preemption notice (SIGTERM) rather than at its last "
                             "step, seconds to wait for the slice to show it is preempted before rerunning on it "
                             "(default %(default)s)")
    return parser


def build_job(args: argparse.Namespace, overrides: Sequence[str], environ=os.environ) -> Job:
    """Validates the command line (no cloud calls) into a Job."""
    target = gcloud.Target(
        name=accelerators.check_resource_name(args.name),
        zone=accelerators.check_zone(args.zone),
        project=accelerators.check_project(args.project),
        internal_ip=args.internal_ip,
    )
    accelerator = request = None
    if getattr(args, "accelerator_type", None):
        accelerator = accelerators.parse_accelerator_type(args.accelerator_type)
    if args.command in ("up", "watch"):
        runtime = accelerators.check_runtime_version(args.runtime_version, accelerator)
        request = gcloud.SliceRequest(accelerator.name, runtime, args.provisioning, args.queued)
    try:
        remote.check_remote_dir(args.remote_dir)
    except ValueError as error:
        raise InputError(f"--remote_dir: {error}") from None
    if args.poll_seconds <= 0:
        raise InputError(f"--poll_seconds must be positive; got {args.poll_seconds}")
    training = None
    if args.command in ("run", "watch"):
        constraints = args.constraints
        if constraints is None and args.wheel is None and (root := project_root()) is not None:
            if (root / "constraints.txt").is_file():
                constraints = str(root / "constraints.txt")
        training = training_spec(
            config=args.config, overrides=overrides, workdir=args.workdir, accelerator=accelerator, data=args.data,
            env_names=args.env, environ=environ, wheel=args.wheel, extras=args.extras,
            packages=[p.strip() for p in args.packages.split(",") if p.strip()],
            python_version=args.python_version, constraints=constraints, remote_dir=args.remote_dir,
            allow_local_workdir=args.allow_local_workdir,
        )
    return Job(
        target=target, queued=args.queued, request=request, accelerator=accelerator, training=training,
        remote_dir=args.remote_dir, poll_seconds=args.poll_seconds,
        wait_timeout=getattr(args, "wait_timeout", 24 * 3600.0),
    )


_FLAG = re.compile(r"--[a-z][a-z0-9_-]*")


def unrecognized_message(extras: Sequence[str], argv: Sequence[str]) -> str:
    """argparse's "unrecognized arguments" without their values: a flag is named (`--wokdir`, `--foo=...`), any
    other argument by its position on the command line (it may be a secret, e.g. `--env HF_TOKEN "$HF_TOKEN"`)."""
    named, taken, hidden = [], set(), False
    for extra in extras:
        flag, equals, _ = extra.partition("=")
        if _FLAG.fullmatch(flag):
            named.append(flag + ("=..." if equals else ""))
            continue
        position = next((i for i, arg in enumerate(argv, 1) if arg == extra and i not in taken), None)
        taken.add(position)
        named.append(f"argument {position}" if position else "an argument")
        hidden = True
    note = " (an argument that is not a flag is not shown: it may be a secret value)" if hidden else ""
    return "unrecognized arguments: " + ", ".join(named) + note


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        rest, overrides = split_config_overrides(argv)
    except ConfigError as error:
        return report("python -m bert_jax.launch", error)
    parser = build_parser()
    args, extras = parser.parse_known_args(rest)
    if extras:
        parser.error(unrecognized_message(extras, argv))
    if overrides and args.command not in ("run", "watch"):
        field = overrides[0].partition("=")[0]  # not the value: it may be a secret
        parser.error(f"--config.{field}: config overrides apply to run and watch only")
    redactor = secrets.Redactor()
    try:
        # The secrets first, so that every later message (a config error quoting an override, say) is masked.
        redactor = secrets.Redactor(secrets.collect(getattr(args, "env", []), os.environ).values())
        job = build_job(args, overrides)
        runner = Runner(dry_run=args.dry_run, redactor=redactor, verbose=args.verbose)
        check_gcloud_ready(runner)
        if args.command == "up":
            return commands.up(job, runner)
        if args.command == "run":
            return commands.run(job, runner)
        if args.command == "status":
            return commands.status(job, runner)
        if args.command == "logs":
            return commands.logs(job, runner, args.worker, args.follow, args.lines)
        if args.command == "stop":
            return commands.stop(job, runner, args.timeout)
        if args.command == "down":
            return commands.down(job, runner)
        return commands.watch(job, runner, args.max_restarts, args.finish_grace)
    except InputError as error:
        print(f"python -m bert_jax.launch: error: {redactor(str(error))}", file=sys.stderr)
        return 2
    except LaunchError as error:
        print(f"python -m bert_jax.launch: error: {redactor(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("launch: interrupted", file=sys.stderr)
        return 130
