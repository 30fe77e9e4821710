"""Side work (drawing a plot) in a forked child while the process goes on with its own.

At the end of a run the main process tests the model and logs it to MLflow, one core busy, while the
learning-curve PNG (~0.15 s of matplotlib) could be drawn on another. A forked child shares the
parent's memory copy-on-write, so it starts with every module already imported (the fork itself costs
~0.03 s for a run's ~650 MB process; the seed experiment's wrap-up came out ~0.06 s shorter).
The child only runs pure-Python/NumPy drawing code and leaves by `os._exit` (no atexit handlers, no
flushing of the parent's buffers, no closing of its database connections). Where `fork` is missing or
unsafe (Windows, macOS) or the child fails, the work runs in this process instead: same result.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import warnings
from collections.abc import Callable

CHILD_TIMEOUT_S = 30.0  # the plot takes ~0.15 s; past this the child is taken for hung


class SideTask:
    """`work` started beside this process; `result()` waits for it and reruns it here if it failed."""

    def __init__(self, work: Callable[[], object]) -> None:
        self._work = work
        self._pid = _fork_running(work)
        self.forked = self._pid is not None
        self._done = False

    def result(self) -> None:
        if self._done:
            return
        if self._pid is None or not _child_succeeded(self._pid):
            self._work()  # no child, or it failed or hung: do it here, so the outcome is the same
        self._done = True


def _fork_running(work: Callable[[], object]) -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    with warnings.catch_warnings():  # Python 3.12+ warns that a threaded parent's child may deadlock:
        warnings.simplefilter("ignore", DeprecationWarning)  # the child touches no lock-holding library
        pid = os.fork()
    if pid:
        return pid
    try:
        work()
    except BaseException:  # noqa: BLE001 - the parent redoes the work and reports its own error
        os._exit(1)
    os._exit(0)  # never back into the parent's code


def _child_succeeded(pid: int) -> bool:
    """Wait for the child (killing it after `CHILD_TIMEOUT_S`, a hang being the known risk of forking
    a threaded process) and tell whether it exited cleanly."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:  # Linux before 5.3: wait without a limit
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0
    try:
        exited, _, _ = select.select([handle], [], [], CHILD_TIMEOUT_S)
    finally:
        os.close(handle)
    if not exited:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return bool(exited) and os.waitstatus_to_exitcode(status) == 0
