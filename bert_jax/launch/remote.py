"""Shell scripts run on every TPU worker through `gcloud compute tpus tpu-vm ssh --command` (pure string builders).

Layout of the job directory on each worker (relative to the ssh user's home directory):

    bert_jax_job/
      dist/*.whl         the project wheel built on the launching machine
      configs/*.py       the config file and its siblings (a config may load a sibling, as large_cased.py does)
      constraints.txt    exact versions to install with (if the project has one)
      venv/              Python >= 3.11 environment made with uv (TPU VM images ship Python 3.10)
      data/              the dataset copied from GCS (`run --data gs://...`), when given
      train.log          this worker's training output, appended across restarts
      train.pid          PID of the training process (not of its wrapper)
      exit_code          written by the wrapper when training exits
      stop_requested     written by `stop`, so an exit after SIGTERM reads as "stopped", not "exited"

Training runs under `setsid nohup` with stdin/stdout/stderr redirected, so it is detached from the ssh session and
the ssh command returns at once. Every script is one line (statements joined by "; ") so printed commands stay one
command per line. Each status line starts with `bert_jax-job:` so the launcher can parse it among other output.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Sequence

DEFAULT_REMOTE_DIR = "bert_jax_job"
STATUS_PREFIX = "bert_jax-job:"
LOG_PREFIX = "bert_jax-log:"
RESULT_PREFIX = "bert_jax-result:"
START_HEADER = "=== bert_jax launch: training starts"
SECRETS_FILE = ".secrets.env"
_SAFE_REMOTE_DIR = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def check_remote_dir(remote_dir: str) -> str:
    if not _SAFE_REMOTE_DIR.match(remote_dir) or ".." in remote_dir.split("/"):
        raise ValueError(
            f"remote directory {remote_dir!r} must be a relative path below the worker's home directory "
            f"(letters, digits, . _ - and /), e.g. {DEFAULT_REMOTE_DIR}"
        )
    return remote_dir


def _join(statements: Sequence[str]) -> str:
    """One line; a statement ending in `&` (background) takes no `;` after it, which bash would reject."""
    line = ""
    for statement in statements:
        if line:
            line += " " if line.endswith("&") else "; "
        line += statement
    return line


def prepare_script(remote_dir: str = DEFAULT_REMOTE_DIR) -> str:
    """Creates the job directory and removes the previous run's wheel and configs (the venv and logs stay)."""
    d = shlex.quote(check_remote_dir(remote_dir))
    return _join([
        "set -e",
        f"mkdir -p {d}/dist {d}/configs",
        f"rm -f {d}/dist/*.whl {d}/configs/*.py",
    ])


def setup_script(
    wheel_name: str,
    *,
    remote_dir: str = DEFAULT_REMOTE_DIR,
    extras: str = "tpu",
    constraints: bool = True,
    python_version: str = "3.12",
    packages: Sequence[str] = (),
    data_source: str | None = None,
) -> str:
    """Installs the shipped wheel into the job's venv (made with uv) and copies the dataset from GCS if asked.

    `--reinstall-package bert_jax` because every build has the same version number: without it, uv would keep the
    previous run's code.
    """
    d = shlex.quote(check_remote_dir(remote_dir))
    requirement = f"dist/{wheel_name}" + (f"[{extras}]" if extras else "")
    install = '"$UV" pip install --quiet --python venv/bin/python --reinstall-package bert_jax'
    if constraints:
        install += " -c constraints.txt"
    install += " " + " ".join(shlex.quote(r) for r in [requirement, *packages])
    statements = [
        "set -e",
        f"cd {d}",
        'UV="$(command -v uv || true)"',
        # TPU VM images have pip for the system Python 3.10; newer Ubuntu images refuse --user installs
        # without --break-system-packages.
        'if [ -z "$UV" ]; then UV="$HOME/.local/bin/uv"; if [ ! -x "$UV" ]; then '
        "python3 -m pip install --user --quiet uv || "
        "python3 -m pip install --user --quiet --break-system-packages uv; fi; fi",
        f'if [ ! -x venv/bin/python ]; then "$UV" venv --quiet --python {shlex.quote(python_version)} venv; fi',
        install,
    ]
    if data_source:
        statements.append(f"gcloud storage rsync --recursive {shlex.quote(data_source)} data")
    statements.append(f"echo {shlex.quote(f'{STATUS_PREFIX} installed {wheel_name}')}")
    return _join(statements)


def train_arguments(config_spec: str, workdir: str, overrides: Sequence[str]) -> list[str]:
    """Arguments after the interpreter: the trainer's CLI contract (`--config.FIELD=VALUE` overrides)."""
    return ["-m", "bert_jax.train", "--config", config_spec, "--workdir", workdir,
            *(f"--config.{override}" for override in overrides)]


def start_script(train_args: Sequence[str], *, remote_dir: str = DEFAULT_REMOTE_DIR) -> str:
    """Starts training detached; refuses if it already runs here. Secrets are sourced, then deleted, first."""
    d = shlex.quote(check_remote_dir(remote_dir))
    # The wrapper records the trainer's own PID (so `stop` signals the trainer, not a shell that would defer the
    # signal) and its exit code (so a finished run is told from a lost one).
    wrapper = (
        'venv/bin/python "$@" & echo $! > train.pid; wait $!; code=$?; '
        "echo $code > exit_code.tmp; mv exit_code.tmp exit_code"
    )
    arguments = " ".join(shlex.quote(a) for a in train_args)
    return _join([
        f'cd {d} || {{ echo "{STATUS_PREFIX} no {d} here: run the launcher\'s run command (it installs first)" >&2; '
        "exit 2; }",
        f"if [ -f {SECRETS_FILE} ]; then set -a; . ./{SECRETS_FILE}; set +a; rm -f {SECRETS_FILE}; fi",
        'if [ -f train.pid ] && kill -0 "$(cat train.pid)" 2>/dev/null; then '
        f'echo "{STATUS_PREFIX} already running (pid $(cat train.pid)): stop it first" >&2; exit 3; fi',
        "rm -f train.pid exit_code exit_code.tmp stop_requested",
        f'echo "{START_HEADER} $(date -u +%Y-%m-%dT%H:%M:%SZ) ===" >> train.log',
        f"setsid nohup bash -c {shlex.quote(wrapper)} bert_jax-train {arguments} >> train.log 2>&1 < /dev/null &",
        "for i in $(seq 100); do [ -s train.pid ] && break; sleep 0.1; done",
        f'if [ ! -s train.pid ]; then echo "{STATUS_PREFIX} training did not start; see {d}/train.log" >&2; '
        "exit 4; fi",
        f'echo "{STATUS_PREFIX} started pid=$(cat train.pid)"',
    ])


def state_script(remote_dir: str = DEFAULT_REMOTE_DIR) -> str:
    """Prints `bert_jax-job: STATE [details]` (running, exited, stopped, lost, not-started) and the last log line."""
    d = shlex.quote(check_remote_dir(remote_dir))
    p = STATUS_PREFIX
    return _join([
        f'cd {d} 2>/dev/null || {{ echo "{p} not-started"; exit 0; }}',
        'if [ -f train.pid ] && kill -0 "$(cat train.pid)" 2>/dev/null; then '
        f'echo "{p} running pid=$(cat train.pid)"; '
        f'elif [ -f exit_code ] && [ -f stop_requested ]; then echo "{p} stopped code=$(cat exit_code)"; '
        f'elif [ -f exit_code ]; then echo "{p} exited code=$(cat exit_code)"; '
        f'elif [ -f train.pid ]; then echo "{p} lost"; '
        f'else echo "{p} not-started"; fi',
        f"if [ -f train.log ]; then tail -n 1 train.log | sed 's/^/{LOG_PREFIX} /'; "
        # The trainer's last words in this run (after the latest start header): "finished at step N" or
        # "preempted at step N" (both exit 0).
        f"awk '/{START_HEADER}/ {{r=\"\"}} match($0, /(finished|preempted) at step [0-9]+/) "
        f"{{r=substr($0, RSTART, RLENGTH)}} END {{if (r != \"\") print \"{RESULT_PREFIX} \" r}}' train.log; fi",
        "true",
    ])


def stop_script(timeout_seconds: int = 600, remote_dir: str = DEFAULT_REMOTE_DIR) -> str:
    """SIGTERM to the trainer (it agrees on a step with the other workers, saves and exits), SIGKILL after a timeout."""
    d = shlex.quote(check_remote_dir(remote_dir))
    p = STATUS_PREFIX
    timeout = int(timeout_seconds)
    return _join([
        f'cd {d} 2>/dev/null || {{ echo "{p} not running"; exit 0; }}',
        'if [ -f train.pid ] && kill -0 "$(cat train.pid)" 2>/dev/null; then '
        'pid=$(cat train.pid); touch stop_requested; kill -TERM "$pid"; '
        f'for i in $(seq {timeout}); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done; '
        'if kill -0 "$pid" 2>/dev/null; then '
        f'echo "{p} pid $pid still runs {timeout}s after SIGTERM: sending SIGKILL" >&2; kill -KILL "$pid"; fi; '
        "for i in $(seq 50); do [ -f exit_code ] && break; sleep 0.1; done; "
        f'echo "{p} stopped pid=$pid"; '
        f'else echo "{p} not running"; fi',
    ])


def tail_script(lines: int = 100, follow: bool = False, remote_dir: str = DEFAULT_REMOTE_DIR) -> str:
    log = f"{shlex.quote(check_remote_dir(remote_dir))}/train.log"
    if follow:
        return f"tail -n {int(lines)} -F {log}"  # -F waits for a log that does not exist yet
    return f'if [ -f {log} ]; then tail -n {int(lines)} {log}; else echo "{STATUS_PREFIX} no {log} on this worker"; fi'


_STATE_LINE = re.compile(rf"^{re.escape(STATUS_PREFIX)} (?P<state>[a-z-]+)(?: (?P<detail>\S+))?")


@dataclasses.dataclass(frozen=True)
class WorkerState:
    state: str  # running, exited, stopped, lost, not-started; "unknown" if no status line; "unreachable" (ssh)
    detail: str | None = None  # pid=N or code=N
    last_log: str | None = None  # the log's last line
    result: str | None = None  # "finished at step N" / "preempted at step N" of the latest run, if it said so

    @property
    def exit_code(self) -> int | None:
        if self.detail and self.detail.startswith("code="):
            try:
                return int(self.detail[5:])
            except ValueError:
                return None
        return None

    def describe(self) -> str:
        text = self.state + (f" ({self.detail})" if self.detail else "")
        return text + (f", {self.result}" if self.result else "")


def parse_state(output: str) -> WorkerState:
    """The WorkerState that `state_script` printed (among whatever else the worker printed)."""
    state, detail, last_log, result = "unknown", None, None, None
    for line in output.splitlines():
        match = _STATE_LINE.match(line.strip())
        if match:
            state, detail = match["state"], match["detail"]
        elif line.startswith(LOG_PREFIX):
            last_log = line[len(LOG_PREFIX):].strip()
        elif line.startswith(RESULT_PREFIX):
            result = line[len(RESULT_PREFIX):].strip()
    return WorkerState(state, detail, last_log, result)
