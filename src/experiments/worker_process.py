"""How a population's worker processes (the writer, the plot workers) start."""

from __future__ import annotations

import signal

from experiments.speedups import leave_fast_at_exit


def start_worker() -> None:
    """`ProcessPoolExecutor(initializer=...)`: Ctrl-C reaches every process of the terminal's group, and is
    the sweep's to handle (it closes the runs KILLED, then waits for what its workers were given): a
    worker interrupted mid-task would hand the sweep a `KeyboardInterrupt` for that task instead. And the
    worker leaves without the interpreter's teardown."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    leave_fast_at_exit()
