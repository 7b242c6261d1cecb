"""Runs argv lists as subprocesses, or, under --dry-run, prints them instead; every printed text is redacted.

A command about to run is echoed to stderr as `+ COMMAND` (as `set -x` does); under --dry-run each command is printed
to stdout, one per line, shell-quoted so it can be pasted into a shell. Captured output is redacted before anyone
sees it; streamed output (logs) is redacted line by line, which masks a multi-line secret's lines one by one
(the rule is in secrets.py).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import threading
from typing import IO, Sequence

from bert_jax.launch import gcloud
from bert_jax.launch.errors import LaunchError
from bert_jax.launch.secrets import Redactor


class CommandFailed(LaunchError):
    def __init__(self, message: str, result: subprocess.CompletedProcess):
        super().__init__(message)
        self.result = result


class Runner:
    def __init__(
        self,
        *,
        dry_run: bool = False,
        redactor: Redactor | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        verbose: bool = False,
    ):
        self.dry_run = dry_run
        self.verbose = verbose  # also echo read-only queries (describe, state checks), which watch repeats
        self.redact = redactor or Redactor()
        self._stdout = stdout
        self._stderr = stderr

    @property
    def out(self) -> IO[str]:
        return self._stdout or sys.stdout

    @property
    def err(self) -> IO[str]:
        return self._stderr or sys.stderr

    def say(self, message: str) -> None:
        """A progress or result line for the user (stderr, so that dry-run stdout holds only commands)."""
        print(self.redact(message), file=self.err, flush=True)

    def show(self, argv: Sequence[str], query: bool = False) -> None:
        line = self.redact(shlex.join(argv))
        if self.dry_run:
            print(line, file=self.out, flush=True)
        elif self.verbose or not query:
            print(f"+ {line}", file=self.err, flush=True)

    def run(
        self,
        argv: Sequence[str],
        *,
        capture: bool = True,
        check: bool = True,
        what: str | None = None,
        query: bool = False,
    ) -> subprocess.CompletedProcess | None:
        """Runs `argv` (None under --dry-run). `capture=False` lets gcloud's own progress reach the terminal;
        `query=True` marks a read-only command, echoed only with --verbose."""
        self.show(argv, query)
        if self.dry_run:
            return None
        try:
            result = subprocess.run(list(argv), capture_output=capture, text=True, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise LaunchError(f"{argv[0]!r} is not on PATH: {_INSTALL_HINT.get(argv[0], 'install it')}") from None
        if capture:
            result = subprocess.CompletedProcess(
                result.args, result.returncode, self.redact(result.stdout or ""), self.redact(result.stderr or "")
            )
        if check and result.returncode != 0:
            detail = _tail((result.stderr or "") + (result.stdout or "")) if capture else "see the output above"
            raise CommandFailed(f"{what or argv[0]} failed (exit {result.returncode}): {detail}", result)
        return result

    def stream(self, argv: Sequence[str], *, prefix: str = "") -> int:
        """Runs `argv`, passing its output (stdout and stderr merged) line by line, redacted, to our stdout."""
        self.show(argv)
        if self.dry_run:
            return 0
        return _stream_process(argv, prefix, self.redact, self.out)

    def stream_many(self, argvs: Sequence[Sequence[str]], prefixes: Sequence[str]) -> int:
        """Runs several commands at once (e.g. `tail -F` on each worker), prefixing their lines; worst exit code."""
        for argv in argvs:
            self.show(argv)
        if self.dry_run:
            return 0
        processes = [_start(argv) for argv in argvs]
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_copy_lines, args=(process, prefix, self.redact, self.out, lock), daemon=True)
            for process, prefix in zip(processes, prefixes)
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            for process in processes:
                process.terminate()
            raise
        return max(process.wait() for process in processes)


_INSTALL_HINT = {
    gcloud.GCLOUD: "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), then run "
    "`gcloud auth login`",
}


def _tail(text: str, lines: int = 15) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n  " + "\n  ".join(kept) if kept else "(no output)"


def _start(argv: Sequence[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            bufsize=1,
        )
    except FileNotFoundError:
        raise LaunchError(f"{argv[0]!r} is not on PATH: {_INSTALL_HINT.get(argv[0], 'install it')}") from None


def _copy_lines(process: subprocess.Popen, prefix: str, redact, out: IO[str], lock: threading.Lock | None = None):
    with process.stdout:
        for line in process.stdout:
            text = prefix + redact(line.rstrip("\n"))
            if lock is None:
                print(text, file=out, flush=True)
            else:
                with lock:
                    print(text, file=out, flush=True)


def _stream_process(argv: Sequence[str], prefix: str, redact, out: IO[str]) -> int:
    process = _start(argv)
    try:
        _copy_lines(process, prefix, redact, out)
    except KeyboardInterrupt:
        process.terminate()
        raise
    return process.wait()


def check_gcloud_ready(runner: Runner) -> None:
    """gcloud is installed and has an active account; otherwise a LaunchError saying how to fix it."""
    argv = gcloud.auth_list()
    if runner.dry_run:
        runner.show(argv, query=True)
        return
    if shutil.which(gcloud.GCLOUD) is None:
        raise LaunchError(f"`gcloud` is not on PATH: {_INSTALL_HINT[gcloud.GCLOUD]}", exit_code=2)
    result = runner.run(argv, check=False, query=True)
    accounts = result.stdout.split()
    if result.returncode != 0 or not accounts:
        raise LaunchError(
            "gcloud is not authenticated (`gcloud auth list` shows no active account): run `gcloud auth login` "
            "(or `gcloud auth activate-service-account --key-file=KEY.json`), then retry"
            + (f"; gcloud said:{_tail(result.stderr)}" if result.returncode != 0 else ""),
            exit_code=2,
        )
