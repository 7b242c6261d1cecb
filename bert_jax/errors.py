"""The errors a user can fix, in one place. Each message names the problem (file, line, field, parameter) and the fix.

Every command catches `UserError` and prints it as one line on stderr with exit status 2 (`report`); anything else
is a bug or a failed run and keeps its traceback. This module imports nothing heavy, so any module may use it.
"""

from __future__ import annotations

import argparse
import sys


class UserError(Exception):
    """Base of the errors below: bad input that the message tells the user how to fix."""


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the field and what to do."""


class InputError(UserError, ValueError):
    """Bad input data or arguments (a corpus, a vocab, a dataset directory, a flag); the message says where."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or model directory that cannot be used for this run, or an export that would be unsafe."""


class MeshError(UserError, ValueError):
    """A mesh or sharding rule that does not fit the devices or a parameter; the message names the config field."""


class TrainingError(RuntimeError):
    """The run cannot go on (diverged, inconsistent data): not bad input, so commands exit 1; the message says why
    and what to do."""


def report(prog: str, error: UserError) -> int:
    """Prints `error` as one line on stderr, `PROG: error: MESSAGE` as argparse prints usage errors (`prog` as the
    user typed the command, e.g. "python -m bert_jax.train"); returns the exit status 2."""
    message = " ".join(str(error).split("\n"))
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults in --help, but not where they say nothing: required flags, flags without a default
    (None, False switches) and help texts that already state theirs."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or "%(default)" in text or action.default in (None, False, argparse.SUPPRESS)
                or action.option_strings == [] or "default" in text.lower()):
            return text
        return super()._get_help_string(action)
