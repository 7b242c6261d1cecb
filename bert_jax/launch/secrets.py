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
captured gcloud output, streamed logs, its own errors) goes through `Redactor`, which masks every secret value.

What `Redactor` masks, for each value (`secret_forms`):
- the value, and the value without surrounding whitespace (a token read from a file often ends in a newline);
- every escaped form the launcher itself produces: `shlex.quote` writes a `'` inside single quotes as `'"'"'`, once
  for a value in a worker script (or the env file) and once more when the whole `--command=SCRIPT` is printed
  (`shlex.join`), so both levels are masked; `repr` (the `{x!r}` of error messages) escapes quotes, backslashes and
  newlines, in either quoting style. The launcher produces no JSON or base64 form of a value, so none is masked.
- for a multi-line value (a PEM key, a pretty-printed JSON service-account key), each of its lines on its own, in
  every form above, because worker output is masked line by line (and a line of output may hold just one line of the
  key). A line is masked on its own when it has at least `MIN_LINE_CHARS` (8) characters without its surrounding
  whitespace and is not a PEM armor line (`-----BEGIN ...-----`, `-----END ...-----`); shorter lines (`{`, `}`, the
  last few characters of a base64 body) give nothing away and are too common to mask, and the armor lines stay
  visible so that a reader sees that a key was printed, masked.
All spans that match any form are masked together, so overlapping forms leave no fragment of a value behind.

Errors about `--env` itself never show the argument: it may be a value given where a NAME was expected
(`--env "$HF_TOKEN"`, `--env HF_TOKEN=hf_...`). They name its position (the 2nd --env) and, where the argument is
the value of a variable of this shell, that variable's name.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from bert_jax.errors import InputError

MASK = "[REDACTED]"
MIN_LINE_CHARS = 8
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PEM_ARMOR = re.compile(r"^-----(BEGIN|END) [A-Z0-9 ]+-----$")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _env_error(position: int, argument: str, environ: Mapping[str, str]) -> InputError:
    """What is wrong with the `position`-th --env argument, without showing it."""
    where = f"the {_ordinal(position)} --env"
    holders = sorted(name for name, value in environ.items() if value and value == argument and _ENV_NAME.match(name))
    if holders:
        named = " or ".join(f"${name}" for name in holders)
        return InputError(f"{where} is the value of {named}, not a variable name: write --env {holders[0]} (the "
                          f"name, without $); the argument is not shown")
    if "=" in argument:
        return InputError(f"{where} has the form NAME=VALUE: give only the NAME of an environment variable "
                          f"(e.g. --env HF_TOKEN), not NAME=VALUE; its value is read from this shell's environment "
                          f"(export it first); the argument is not shown, as it holds a value")
    if not _ENV_NAME.match(argument):
        return InputError(f"{where} is not an environment variable name (letters, digits and _, not starting with a "
                          f"digit): give the NAME (e.g. --env HF_TOKEN); the argument is not shown, in case it is a "
                          f"value")
    return InputError(f"{where} names a variable that is not set in this shell: export it first "
                      f"(read -s NAME && export NAME); the argument is not shown, in case it is a value given in "
                      f"place of a name")


def collect(names: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The values of the named variables from `environ`; a bad or unset name is an InputError that does not show
    the argument (it may be a value given in place of a name)."""
    secrets: dict[str, str] = {}
    for position, name in enumerate(names, 1):
        if not (_ENV_NAME.match(name) and name in environ):
            raise _env_error(position, name, environ)
        secrets[name] = environ[name]
    return secrets


def _shell_escaped(text: str) -> str:
    """`text` as it stands inside a `shlex.quote`d string (or a `shlex.join`ed argument that holds it)."""
    return text.replace("'", "'\"'\"'")


def _repr_escaped(text: str) -> set[str]:
    """`text` as it stands inside a repr()'d string: quoted with ' (a ' escaped) or, when it has no ", with "."""
    forms = {repr(text + "'\"")[1:-4]}  # both quotes in it: repr uses ' and escapes it
    if '"' not in text:
        forms.add(repr(text + "'")[1:-2])  # repr uses ", and leaves ' alone
    return forms


def secret_forms(value: str) -> set[str]:
    """Every text that `Redactor` masks for `value` (the module docstring gives the rule)."""
    plain = {value, value.strip()}
    forms = set(plain)
    for text in plain:
        once = _shell_escaped(text)
        forms |= {once, _shell_escaped(once), *_repr_escaped(text)}
    for form in list(forms):
        if "\n" in form or "\r" in form:
            for line in form.splitlines():
                line = line.strip()
                if len(line) >= MIN_LINE_CHARS and not _PEM_ARMOR.match(line):
                    forms.add(line)
    forms.discard("")
    return forms


class Redactor:
    """Replaces every form of every secret value (`secret_forms`) in a text by `[REDACTED]`; overlapping matches
    are masked as one span, so no fragment of a value is left."""

    def __init__(self, values: Iterable[str] = ()):
        self._forms = sorted({form for value in values if value for form in secret_forms(value)}, key=len,
                             reverse=True)

    def __call__(self, text: str) -> str:
        spans = []
        for form in self._forms:
            start = text.find(form)
            while start != -1:
                spans.append((start, start + len(form)))
                start = text.find(form, start + 1)
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start < merged[-1][1]:  # overlaps the span before: one mask for both
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        pieces, done = [], 0
        for start, end in merged:
            pieces += [text[done:start], MASK]
            done = end
        return "".join(pieces) + text[done:]

    def __bool__(self) -> bool:
        return bool(self._forms)


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
