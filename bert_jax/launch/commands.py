"""The subcommands: up, run, status, logs, stop, down, watch. Each takes a validated Job and a Runner.

`watch` is the loop that keeps a job alive: it creates the slice and starts training if needed, then polls; when
the slice is preempted, suspended or failed it deletes it, creates it again and reruns the same command, so the
trainer resumes from the last checkpoint in the GCS workdir. It gives up after --max_restarts recoveries.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from bert_jax.launch import gcloud, remote, resources, secrets, wheel
from bert_jax.errors import InputError
from bert_jax.launch.errors import LaunchError
from bert_jax.launch.jobs import Job
from bert_jax.launch.resources import ABSENT, DEAD, READY, ResourceStatus
from bert_jax.launch.runner import Runner


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _hint(job: Job, command: str) -> str:
    flags = [f"--name {job.target.name}", f"--zone {job.target.zone}"]
    if job.target.project:
        flags.append(f"--project {job.target.project}")
    return f"python -m bert_jax.launch {command} {' '.join(flags)}"


def wait_until(job: Job, runner: Runner, wanted: set[str], what: str) -> ResourceStatus:
    """Polls `describe` until the health is in `wanted`, printing each change with the time waited."""
    start = time.monotonic()
    last = None
    while True:
        status = resources.inspect(job.target, runner, queued=job.queued)
        waited = time.monotonic() - start
        if status.summary() != last:
            note = " (a state bert_jax does not know; waiting)" if status.unknown_state else ""
            runner.say(f"launch: {job.target.name}: {status.summary()}{note} [{_elapsed(waited)} waited]")
            last = status.summary()
        if status.health in wanted:
            return status
        if READY in wanted and status.health in (DEAD, ABSENT):
            raise LaunchError(f"{job.target.name} became {status.summary()} while waiting for it to be {what}")
        if waited > job.wait_timeout:
            raise LaunchError(
                f"{job.target.name} is still {status.summary()} after {_elapsed(waited)} (--wait_timeout); "
                f"it is left as it is: delete it with `{_hint(job, 'down')}`"
            )
        time.sleep(job.poll_seconds)


# ----------------------------------------------------------------------------------------------------------- up


def up(job: Job, runner: Runner) -> int:
    """Creates the slice unless it exists (idempotent), then waits until its workers are ready."""
    if job.request is None:
        raise InputError("up needs --accelerator_type")
    status = resources.inspect(job.target, runner, queued=job.queued, assume=ABSENT)
    if status.health == READY:
        runner.say(f"launch: {job.target.name} is already up: {status.summary()}")
        return 0
    if status.health == DEAD:
        raise LaunchError(
            f"{job.target.name} exists but is {status.summary()}: delete it first with `{_hint(job, 'down')}` "
            f"(watch does this by itself)"
        )
    if status.health == ABSENT:
        what = "queued resource" if job.request.queued else "TPU VM"
        runner.say(f"launch: creating {what} {job.target.name}: {job.accelerator.describe() if job.accelerator else ''}"
                   f", {job.request.provisioning}, runtime {job.request.runtime_version}")
        runner.run(gcloud.create(job.target, job.request), capture=False, what=f"creating the {what}")
    if runner.dry_run:
        return 0
    status = wait_until(job, runner, {READY}, "ready")
    runner.say(f"launch: {job.target.name} is up: {status.summary()}")
    return 0


# ---------------------------------------------------------------------------------------------------------- run


def job_state(job: Job, runner: Runner, worker: int | str = 0) -> remote.WorkerState:
    """Training's state on one worker; "unreachable" if ssh fails."""
    argv = gcloud.ssh(job.target, remote.state_script(job.remote_dir), worker=worker)
    result = runner.run(argv, check=False, query=True)
    if result is None:
        return remote.WorkerState("not-started")
    if result.returncode != 0:
        return remote.WorkerState("unreachable", f"ssh-exit={result.returncode}",
                                  (result.stderr or "").strip()[-300:] or None)
    return remote.parse_state(result.stdout)


def _ship_secrets(job: Job, runner: Runner) -> None:
    training = job.training
    destination = f"{job.remote_dir}/{remote.SECRETS_FILE}"
    # A private directory of its own (mkdtemp: 0700), removed at once, whatever happens.
    with tempfile.TemporaryDirectory(prefix="bert_jax_secrets_") as private:
        path = Path(private) / remote.SECRETS_FILE
        if not runner.dry_run:
            path = secrets.write_env_file(training.secrets, private, remote.SECRETS_FILE)
        runner.run(gcloud.scp(job.target, [str(path)], destination), what="copying the --env secrets to the workers")


def run(job: Job, runner: Runner) -> int:
    """Ships the code and config to every worker, installs, and starts training there, detached."""
    training = job.training
    if training is None:
        raise InputError("run needs --workdir (and --config)")
    status = resources.inspect(job.target, runner, queued=job.queued)
    if status.health != READY:
        raise LaunchError(
            f"{job.target.name} is not ready ({status.summary()}): create it with `{_hint(job, 'up')} "
            f"--accelerator_type TYPE`, or use watch, which creates it and runs"
        )
    worker_state = job_state(job, runner, worker=0)
    if worker_state.state == "running":
        raise LaunchError(
            f"training already runs on {job.target.name} (worker 0: {worker_state.detail}); stop it first with "
            f"`{_hint(job, 'stop')}`"
        )
    with tempfile.TemporaryDirectory(prefix="bert_jax_launch_") as scratch:
        scratch = Path(scratch)
        wheel_path = training.wheel
        if wheel_path is None:
            root = wheel.project_root()
            if root is None:
                raise InputError("bert_jax does not run from a source checkout here; build a wheel and pass --wheel")
            wheel_path = wheel.build_wheel(root, scratch / "wheel", runner)
        constraints = training.constraints
        entries = wheel.stage(scratch / "stage", wheel_path, training.config_path, constraints, runner.dry_run)
        runner.say(f"launch: copying {wheel_path.name}, configs/ and the constraints to the workers")
        runner.run(gcloud.ssh(job.target, remote.prepare_script(job.remote_dir)), what="preparing the workers")
        runner.run(gcloud.scp(job.target, entries, f"{job.remote_dir}/", recurse=True), what="copying the code")
        runner.say("launch: installing on the workers (uv venv + the wheel" +
                   (f"; copying {training.data_source}" if training.data_source else "") + ")")
        setup = remote.setup_script(
            wheel_path.name, remote_dir=job.remote_dir, extras=training.extras, constraints=constraints is not None,
            python_version=training.python_version, packages=training.packages, data_source=training.data_source,
        )
        if runner.stream(gcloud.ssh(job.target, setup)) != 0:
            raise LaunchError("installing on the workers failed (see the output above)")
    if training.secrets:  # last, so that they sit on the workers' disks only until the start script deletes them
        _ship_secrets(job, runner)
    start = gcloud.ssh(job.target, remote.start_script(training.train_arguments(), remote_dir=job.remote_dir))
    if runner.stream(start) != 0:
        raise LaunchError(
            f"starting training failed on at least one worker (see above); worker logs: `{_hint(job, 'logs')} "
            f"--worker all`"
        )
    if not runner.dry_run:
        runner.say(f"launch: training started on {job.target.name}; follow it with `{_hint(job, 'logs')} --follow`")
    return 0


# ------------------------------------------------------------------------------------------------ status / logs


def _per_worker_outputs(job: Job, runner: Runner, script: str) -> list[tuple[str, str]]:
    """Runs `script` on all workers at once; (worker, output) pairs from gcloud's --output-directory files."""
    with tempfile.TemporaryDirectory(prefix="bert_jax_outputs_") as directory:
        result = runner.run(gcloud.ssh(job.target, script, output_directory=directory), check=False, query=True)
        if result is None:
            return []
        logs = sorted(Path(directory).glob("*.log"), key=lambda p: (len(p.stem), p.stem))  # 2.log before 10.log
        outputs = [(log.stem, runner.redact(log.read_text(encoding="utf-8", errors="replace"))) for log in logs]
        if not outputs:
            outputs = [("all", result.stdout + result.stderr)]
        return outputs


def status(job: Job, runner: Runner) -> int:
    slice_status = resources.inspect(job.target, runner, queued=job.queued)
    print(f"{job.target.name}: {slice_status.summary()}", file=runner.out, flush=True)
    if slice_status.health != READY:
        return 0
    for worker, output in _per_worker_outputs(job, runner, remote.state_script(job.remote_dir)):
        worker_state = remote.parse_state(output)
        line = f"  worker {worker}: {worker_state.describe()}"
        print(line + (f"  | {worker_state.last_log}" if worker_state.last_log else ""), file=runner.out, flush=True)
    return 0


def logs(job: Job, runner: Runner, worker: str, follow: bool, lines: int) -> int:
    script = remote.tail_script(lines, follow, job.remote_dir)
    if worker != "all":
        return runner.stream(gcloud.ssh(job.target, script, worker=worker))
    if follow:
        count = job.accelerator.workers if job.accelerator else None
        if count is None:
            count = resources.inspect(job.target, runner, queued=job.queued).workers or 1
        argvs = [gcloud.ssh(job.target, script, worker=i) for i in range(count)]
        return runner.stream_many(argvs, [f"[worker {i}] " for i in range(count)])
    for name, output in _per_worker_outputs(job, runner, script):
        print(f"==> worker {name} <==\n{output.rstrip()}", file=runner.out, flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------- stop/down


def stop(job: Job, runner: Runner, timeout_seconds: int) -> int:
    """SIGTERM on all workers at once: the trainer saves a checkpoint and exits; the slice stays up."""
    code = runner.stream(gcloud.ssh(job.target, remote.stop_script(timeout_seconds, job.remote_dir)))
    if code != 0:
        raise LaunchError(f"stopping failed on at least one worker (ssh exit {code}); see the output above")
    return 0


def down(job: Job, runner: Runner) -> int:
    """Deletes the queued resource (with its node) or the TPU VM, and waits until it is gone."""
    status = resources.inspect(job.target, runner, queued=job.queued)
    if status.health == ABSENT:
        runner.say(f"launch: {job.target.name} does not exist; nothing to delete")
        return 0
    queued = job.queued if runner.dry_run else status.queued
    # A queued resource is deleted with --force, which takes its node along.
    argv = gcloud.queued_resource_delete(job.target) if queued else gcloud.tpu_vm_delete(job.target)
    runner.say(f"launch: deleting {job.target.name} ({status.summary()})")
    runner.run(argv, capture=False, what="deleting")
    if not runner.dry_run:
        wait_until(job, runner, {ABSENT}, "deleted")
        runner.say(f"launch: {job.target.name} deleted")
    return 0


# --------------------------------------------------------------------------------------------------------- watch


class GiveUp(LaunchError):
    """The restarts are used up."""


@dataclasses.dataclass
class _Attempts:
    limit: int
    used: int = 0

    def spend(self, reason: str, runner: Runner) -> None:
        if self.used >= self.limit:
            raise GiveUp(f"watch gives up: {reason}, and all {self.limit} restarts (--max_restarts) are used")
        self.used += 1
        runner.say(f"launch: watch: {reason}; recovery {self.used}/{self.limit}")


def watch(job: Job, runner: Runner, max_restarts: int, finish_grace: float) -> int:
    """Keeps the job alive until training finishes (0), is stopped with `stop` (0), or restarts run out (1)."""
    if job.request is None or job.training is None:
        raise InputError("watch needs --accelerator_type and --workdir (it may have to create the slice and run)")
    if runner.dry_run:  # the commands a first pass would run: create, then run
        up(job, runner)
        return run(job, runner)
    with tempfile.TemporaryDirectory(prefix="bert_jax_watch_") as scratch:
        training = job.training
        if training.wheel is None:  # one build for every rerun: reruns ship the code that was first shipped
            root = wheel.project_root()
            if root is None:
                raise InputError("bert_jax does not run from a source checkout here; build a wheel and pass --wheel")
            training = dataclasses.replace(training, wheel=wheel.build_wheel(root, Path(scratch), runner))
        job = dataclasses.replace(job, training=training)
        return _watch_loop(job, runner, _Attempts(max_restarts), finish_grace)


def _watch_loop(job: Job, runner: Runner, attempts: _Attempts, finish_grace: float) -> int:
    started = False  # a first creation or run is not a recovery
    last_report = None
    while True:
        status = resources.inspect(job.target, runner, queued=job.queued)
        try:
            if status.health in (DEAD, ABSENT):
                if status.health == DEAD or started:
                    attempts.spend(f"{job.target.name} is {status.summary()}", runner)
                if status.health == DEAD:
                    down(job, runner)
                up(job, runner)
                run(job, runner)
                started = True
                continue
            if status.health != READY:
                report = f"{job.target.name}: {status.summary()}"
                if report != last_report:
                    runner.say(f"launch: watch: {report}")
                    last_report = report
                time.sleep(job.poll_seconds)
                continue
            worker = job_state(job, runner, worker=0)
            if worker.state == "running":
                started = True
                report = f"training {worker.describe()}" + (f": {worker.last_log}" if worker.last_log else "")
                if report != last_report:
                    runner.say(f"launch: watch: {report}")
                    last_report = report
            elif worker.state == "stopped":
                runner.say(f"launch: watch: training was stopped ({worker.detail}); watch ends, the slice stays up")
                return 0
            elif worker.state == "exited" and worker.exit_code == 0:
                if worker.result and worker.result.startswith("finished"):
                    runner.say(f"launch: watch: training {worker.result}; the slice stays up: delete it with "
                               f"`{_hint(job, 'down')}`")
                    return 0
                # A trainer that got SIGTERM (a preemption notice) saves and exits 0 too: give the slice time to
                # show its PREEMPTED state; if it stays healthy, start training again.
                time.sleep(finish_grace)
                if resources.inspect(job.target, runner, queued=job.queued).health != READY:
                    continue
                if worker.result is None:  # a trainer that did not say: take its exit 0 at its word
                    runner.say("launch: watch: training exited 0; watch ends, the slice stays up")
                    return 0
                attempts.spend(f"training {worker.result}, but the slice is still healthy", runner)
                run(job, runner)
                continue
            elif worker.state in ("exited", "lost", "not-started"):
                if worker.state != "not-started" or started:
                    attempts.spend(f"training on worker 0 is {worker.describe()}", runner)
                run(job, runner)
                started = True
                continue
            else:  # unreachable or unknown: describe decides on the next poll
                runner.say(f"launch: watch: worker 0 is {worker.describe()}; retrying")
        except LaunchError as error:
            if isinstance(error, GiveUp):
                raise
            runner.say(f"launch: watch: {error}")
        time.sleep(job.poll_seconds)
