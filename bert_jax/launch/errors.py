"""The launcher's one error type: a message that says what is wrong and what to do, printed without a traceback."""

from __future__ import annotations


class LaunchError(Exception):
    """Bad input or a failed step. `exit_code` 2 = bad input (nothing was created), 1 = a step failed."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class InputError(LaunchError):
    """Bad command-line input, found before any cloud resource is touched."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)
