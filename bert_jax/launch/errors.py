"""A launcher step that failed (exit 1): a message that says what went wrong and what to do, printed without a
traceback. Bad input, found before any cloud resource is touched, is `bert_jax.errors.InputError` (exit 2)."""

from __future__ import annotations


class LaunchError(Exception):
    """A failed step; `exit_code` is the command's exit status (1 unless a subclass says otherwise)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
