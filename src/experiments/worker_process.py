"""How a population's worker processes (the writer, the plot workers) start.

Spawned, as a rule: a fresh interpreter imports MLflow or Matplotlib (~1.5 s and ~0.5 s of CPU each), and
a fork of a process holding torch's thread pools or MLflow's open store would share them. The population
host forks its first workers instead (`forking`), at the one moment that is safe: it has loaded everything
they use, no other thread runs (checked), and it has opened no store yet; the workers then start with nothing to
import. Off with `EXPERIMENTS_NO_SPEEDUPS=worker_fork`."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from experiments.speedups import enabled, leave_fast_at_exit
from experiments.timing import mark

# Python 3.12 on warns as a process with threads forks (the first pool's threads run as the second forks);
# macOS's system libraries are not fork-safe once loaded (Python spawns there by default).
_FORK_PYTHONS = ((3, 11),)
_FORK_PLATFORMS = ("linux",)
_FORKING = False
_CLOSE_IN_CHILD: tuple[int, ...] = ()


def fork_measured() -> bool:
    """Whether this platform and Python are those forking workers was measured on."""
    return sys.platform.startswith(_FORK_PLATFORMS) and sys.version_info[:2] in _FORK_PYTHONS


def forks_here() -> bool:
    """Whether `forking` forks here, with the speed-up on."""
    return enabled("worker_fork") and fork_measured()


@contextmanager
def forking(close_in_child: Iterable[int] = ()) -> Iterator[None]:
    """Worker pools created inside are forked from this process, whose caller vouches that it has opened no
    MLflow store; and only where no other thread runs as it enters (else they are spawned). A second pool
    forks while the first one's manager and feeder threads run: its workers never touch what those
    threads hold (the first pool's queues). `close_in_child`: descriptors a worker must not hold (the
    host's pipe, whose end-of-file tells the sweep process the host is gone)."""
    global _FORKING, _CLOSE_IN_CHILD
    sys.stdout.flush()  # a child that flushed an inherited buffer would print it twice
    sys.stderr.flush()
    _FORKING = forks_here() and threading.active_count() == 1
    _CLOSE_IN_CHILD = tuple(close_in_child)
    try:
        yield
    finally:
        _FORKING, _CLOSE_IN_CHILD = False, ()


def pool_options() -> dict[str, Any]:
    """`ProcessPoolExecutor(**pool_options())`: how the workers of a pool created now start (see the
    module's docstring); fixed as the pool is created, whenever its processes start."""
    return {"mp_context": multiprocessing.get_context("fork" if _FORKING else "spawn"),
            "initializer": start_worker, "initargs": (_FORKING, _CLOSE_IN_CHILD if _FORKING else ())}


def start_worker(forked: bool = False, close: tuple[int, ...] = ()) -> None:
    """The pool's initializer: Ctrl-C reaches every process of the terminal's group, and is the sweep's to
    handle (it closes the runs KILLED, then waits for what its workers were given): a worker interrupted
    mid-task would hand the sweep a `KeyboardInterrupt` for that task instead. And the worker leaves
    without the interpreter's teardown, or at once when the process it works for is gone. A `forked` one
    closes the descriptors it must not hold (`close`) and drops the host's SIGTERM handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in close:
        try:
            os.close(fd)
        except OSError:
            pass
    if not gc.isenabled():  # forked while the host's start-up pauses collection: what it inherited stays put
        gc.freeze()
        gc.enable()
    leave_fast_at_exit()
    if forked:
        mark("worker_forked")
    threading.Thread(target=_leave_with, args=(os.getppid(),), daemon=True).start()


def _leave_with(parent: int) -> None:
    """A worker whose process is gone (killed, out of memory) would wait for its next task for ever, and
    hold the terminal's output open: it leaves within a second."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
