"""Secrets passed with `--env NAME`: their values reach the trainer's environment on every worker and nowhere else.

How: the values (read from the launcher's own environment) are written to a local file readable only by the user
(mode 0600, in a private temporary directory), copied with `tpu-vm scp` into the job directory of every worker,
sourced by the start script and deleted there before training starts; the local file is deleted when `run` ends.

Why a copied file rather than the alternatives:
- a value inside `--command` would be printed, kept in gcloud's own logs (~/.config/gcloud/logs) and shown by `ps`
  on both ends;
- VM metadata is readable by every process on the VM and by anyone with `tpu-vm describe` permission;
- ssh stdin cannot be fanned out: `tpu-vm ssh --worker=all` runs one ssh per worker from one gcloud process, and
  which of them reads the launcher's stdin is undefined.
Only file names appear in commands. As a second line of defence, everything the launcher prints (commands,
captured gcloud output, streamed logs) goes through `Redactor`, which masks every secret value.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from bert_jax.errors import InputError

MASK = "[REDACTED]"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def collect(names: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The values of the named variables from `environ`; a bad or unset name is an InputError."""
    secrets: dict[str, str] = {}
    for name in names:
        if not _ENV_NAME.match(name):
            raise InputError(f"--env {name!r}: give the NAME of an environment variable (e.g. --env HF_TOKEN), "
                             f"not NAME=VALUE; its value is read from this shell's environment")
        if name not in environ:
            raise InputError(f"--env {name}: {name} is not set in this shell; export it first "
                             f"(read -s {name} && export {name})")
        secrets[name] = environ[name]
    return secrets


class Redactor:
    """Replaces every secret value in a text by `[REDACTED]` (longest first, so a value inside another goes too)."""

    def __init__(self, values: Iterable[str] = ()):
        self._values = sorted({value for value in values if value}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._values)


def env_file_text(secrets: Mapping[str, str]) -> str:
    """`NAME='value'` lines that `set -a; . FILE` exports; quoting keeps any character (newlines too) intact."""
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in secrets.items())


def write_env_file(secrets: Mapping[str, str], directory: str | os.PathLike, name: str) -> Path:
    """Writes the env file with mode 0600 from creation (never world-readable, not even for an instant)."""
    path = Path(directory) / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as f:
        f.write(env_file_text(secrets))
    return path
