"""Atomic file writes: a temporary file in the target's directory, fsync, `os.replace`, fsync of the directory.

One mechanism for every writer (exports, vocab, built shards, stats), so an interrupted process never leaves a
half-written file under a final name, and a symlink planted at a final name is replaced, never followed. Every file
committed gets the mode `open()` gives a new file (0666 less the process umask), whatever the writer did to its
temporary (safetensors writes its own temporary with `mkstemp`, which is 0600).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

# Temporary names are `.{name}.{pid}.tmp`: hidden, per process, and recognisable for clean-up after a crash.
TEMPORARY_SUFFIX = ".tmp"


def umask_mode() -> int:
    """The mode a new file gets from `open()`: 0666 less the process umask (read without changing it on Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only where /proc is missing)
    os.umask(mask)
    return 0o666 & ~mask


def temporary_path(path: str | os.PathLike) -> str:
    """A fresh, exclusively created temporary file next to `path` (any stale file or link of that name is removed)."""
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    if os.path.lexists(temporary):
        os.unlink(temporary)  # unlinks a planted symlink itself, never its target
    os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    return temporary


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def commit(temporary: str, path: str | os.PathLike) -> None:
    """Makes a finished temporary file durable, with the umask's permissions, and moves it to its final name."""
    with open(temporary, "rb") as f:
        os.fchmod(f.fileno(), umask_mode())
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(os.fspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Calls `write(temporary)` then commits it to `path`; the temporary is removed if writing fails."""
    temporary = temporary_path(path)
    try:
        write(temporary)
        commit(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomic(path, write)


def write_json(path: str | os.PathLike, data: Any, **dump_options) -> Path:
    return write_text(path, json.dumps(data, **dump_options) + "\n")


def write_text_anywhere(path: str | os.PathLike, text: str) -> None:
    """`write_text` on a local disk; an object store's path (gs://...) through etils.epath, whose writes are
    whole-object already."""
    if "://" in str(path):
        from etils import epath

        epath.Path(path).write_text(text)
    else:
        write_text(path, text)
