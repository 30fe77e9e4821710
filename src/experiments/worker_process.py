"""How a population's worker processes (the writer, the plot workers) start."""

from __future__ import annotations

import os
import signal
import threading
import time

from experiments.speedups import leave_fast_at_exit


def start_worker() -> None:
    """`ProcessPoolExecutor(initializer=...)`: Ctrl-C reaches every process of the terminal's group, and is
    the sweep's to handle (it closes the runs KILLED, then waits for what its workers were given): a
    worker interrupted mid-task would hand the sweep a `KeyboardInterrupt` for that task instead. And the
    worker leaves without the interpreter's teardown, or at once when the process it works for is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    leave_fast_at_exit()
    threading.Thread(target=_leave_with, args=(os.getppid(),), daemon=True).start()


def _leave_with(parent: int) -> None:
    """A worker whose process is gone (killed, out of memory) would wait for its next task for ever, and
    hold the terminal's output open: it leaves within a second."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
