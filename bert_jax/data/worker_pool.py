"""A pool of worker processes that die with the process that started them, and whose abrupt death is one clear error.

A `ProcessPoolExecutor` worker waits on a queue whose write end it holds itself, so when the main process is killed
(SIGKILL, a lost SSH session) its workers finish their task and then wait forever, parented to init, holding memory.
Here each worker asks the kernel to kill it when its parent dies (`prctl(PR_SET_PDEATHSIG)`, Linux), and a thread
checks the parent's pid every second as the fallback where that is unavailable.

When a worker is killed instead (the OOM killer picks the largest process: a worker), the executor fails every
pending task with `BrokenProcessPool`. `imap_unordered` turns that into `WorkerLostError` naming the tasks that were
being run (each worker records which task it started in shared memory), so the caller can say which work was lost.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence

# prctl(2) option: the signal the kernel sends this process when its parent (thread) exits.
PR_SET_PDEATHSIG = 1
PARENT_CHECK_SECONDS = 1.0
_NOT_STARTED = 0

_STARTED: Any = None  # per worker: shared array, task position -> pid of the worker that started it


class WorkerLostError(RuntimeError):
    """A worker process died without a Python error (killed by a signal); `positions` are the tasks it and the other
    workers were running, whose work is lost (finished tasks' results were already returned)."""

    def __init__(self, positions: list[int], message: str = "") -> None:
        super().__init__(message or f"a worker process died abruptly while tasks {positions} were being run")
        self.positions = positions


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:  # re-parented: the parent is gone
            os._exit(1)
        time.sleep(PARENT_CHECK_SECONDS)


def die_with_parent(parent_pid: int) -> None:
    """Makes this process exit when `parent_pid` (its parent) does: the kernel's death signal where available, a
    watchdog thread in any case."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the watchdog alone
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _init_worker(parent_pid: int, started: Any, initializer: Callable[..., None] | None,
                 initargs: tuple[Any, ...]) -> None:
    global _STARTED
    die_with_parent(parent_pid)
    _STARTED = started
    if initializer is not None:
        initializer(*initargs)


def _run(function: Callable[[Any], Any], position: int, task: Any) -> Any:
    _STARTED[position] = os.getpid()
    return function(task)


def _succeeded(future: concurrent.futures.Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def imap_unordered(function: Callable[[Any], Any], tasks: Sequence[Any], workers: int, *,
                   initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = (),
                   context: Any = None) -> Iterator[Any]:
    """`function(task)` for every task in `workers` spawned processes, yielded as they finish. A worker that dies
    abruptly raises `WorkerLostError`; on any error the queued tasks are not started. The pool must be driven from a
    thread that outlives it (the death signal follows the thread that started a worker)."""
    context = context or multiprocessing.get_context("spawn")
    started = context.Array("q", len(tasks), lock=False)  # each slot is written by one worker only
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context, initializer=_init_worker,
        initargs=(os.getpid(), started, initializer, initargs))
    try:
        futures = {pool.submit(_run, function, position, task): position for position, task in enumerate(tasks)}
        for future in concurrent.futures.as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:
                raise WorkerLostError([position for other, position in futures.items()
                                       if started[position] != _NOT_STARTED and not _succeeded(other)]) from None
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
