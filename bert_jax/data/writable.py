"""Whether an output directory can be written, checked before any work: a vocab learned for an hour, or a build's
inputs listed and hashed, should not end in a write error that was knowable at the start."""

from __future__ import annotations

import os

from bert_jax.errors import InputError


def check_output_directory(path: str, flag: str = "--output") -> None:
    """Raises `InputError` (naming `flag`) unless `path` is a writable directory or can be created as one.

    Write permission is asked of the kernel (`access(2)`), which also answers "no" on a read-only filesystem, for
    root too; nothing is written to find out.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InputError(f"{flag} {path} exists and is not a directory; choose a directory (new or existing)")
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):  # the nearest existing ancestor is where the directories would be made
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{flag} {path} cannot be created: {existing} is a file, where a directory should be; "
                         f"choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == os.path.abspath(path) else existing
        raise InputError(f"{flag} {path} is not writable: {where} is read-only (permissions or a read-only "
                         f"filesystem); choose a writable {flag}")
