"""One run per workdir: a lock file that a second trainer started on the same workdir finds taken, so two runs never
write each other's checkpoints and metrics. The lock is an `flock` on WORKDIR/.bert_jax.lock, released by the
kernel when the process ends however it ends (kill -9 included), so a stale lock never blocks a resume. Object-store
workdirs (gs://) cannot be locked this way and are not. The same open lock file tells a run that its workdir was
deleted under it (`check_present`)."""

from __future__ import annotations

import fcntl
import json
import logging
import os

from bert_jax.errors import InputError, TrainingError

LOCK_FILE = ".bert_jax.lock"


def is_run_workdir(path: str) -> bool:
    """A training workdir, not a Hugging Face directory, although both may hold a config.json: it has checkpoints/,
    or its config.json is a run's (`run_summary.announce` writes the trainer's config, which names an objective)."""
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return True
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "objective" in config and isinstance(config.get("model"), dict)

log = logging.getLogger("bert_jax")


class WorkdirLock:
    """Held from `acquire()` to `release()`; only process 0 of a run takes it (the others share its workdir)."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self._file = None

    def acquire(self) -> "WorkdirLock":
        if "://" in str(self.workdir):
            log.info("%s is in an object store: not locked against a second trainer", self.workdir)
            return self
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            raise InputError(f"--workdir {self.workdir} is a file, not a directory; choose another --workdir")
        os.makedirs(self.workdir, exist_ok=True)
        path = os.path.join(self.workdir, LOCK_FILE)
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputError(f"another trainer ({holder}) is running in {self.workdir}: wait for it to finish, stop it, "
                             "or choose another --workdir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        self._file = handle
        return self

    def deleted(self) -> bool:
        """Whether the workdir was deleted under the run: the lock file it holds open has no name left."""
        return self._file is not None and os.fstat(self._file.fileno()).st_nlink == 0

    def check_present(self) -> None:
        """Stops the run if its workdir was deleted under it: writing on would recreate a workdir holding
        checkpoints without their history, or fail in orbax's writer threads."""
        if self.deleted():
            raise self.deleted_error()

    def deleted_error(self) -> TrainingError:
        return TrainingError(f"the workdir {self.workdir} was deleted while the run was going; stopped before "
                             "writing into it again. Its checkpoints are gone: start the run again")

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
