"""The worker process that draws a population's learning curves: its plots, and what happens when it
does not answer in time (the plots are drawn in the main process and closing does not wait for it)."""

from __future__ import annotations

import os
import time
from multiprocessing.process import BaseProcess

import pytest

from experiments import plot_worker
from experiments.plot_worker import PlotWorker, plot_worker_for

HISTORY = {"train/loss": {0: 0.7, 1: 0.6}, "val/loss": {0: 0.72, 1: 0.65},
           "train/acc": {0: 0.5, 1: 0.6}, "val/acc": {0: 0.48, 1: 0.55}}


def _is_png(path: object) -> bool:
    return path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[attr-defined]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_workers_draw_each_members_plot(workers: int) -> None:
    worker = PlotWorker(workers=workers)
    try:
        # Started before any plot is asked for (while a population trains), one process per worker.
        assert len(worker._pool._processes) == workers
        for key in range(1, 6):
            worker.submit(key, HISTORY, "acc", "curve.png")
        paths = [worker.path(key) for key in range(1, 6)]
        assert all(_is_png(path) for path in paths) and len(set(paths)) == 5
        assert worker.path(6) is None  # never submitted
    finally:
        worker.close()


def _ended(process: BaseProcess, timeout_s: float = 10.0) -> bool:
    """Whether the process is gone. Its exit code alone can lag: the pool's own thread may be reaping it
    at the moment it is asked, and then `is_alive()` answers True for a process that no longer exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.exitcode is not None:
            return True
        try:
            os.kill(process.pid, 0)  # type: ignore[arg-type]
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_worker_that_does_not_answer_in_time_is_left_and_the_plots_are_drawn_here() -> None:
    worker = PlotWorker(wait_s=0.001)  # shorter than the worker's start-up: it cannot answer in time
    processes = []
    try:
        worker.submit(1, HISTORY, "acc", "curve.png")
        processes = list(worker._pool._processes.values())
        assert _is_png(worker.path(1))
        worker.submit(2, HISTORY, "acc", "curve.png")
        assert _is_png(worker.path(2))  # not waited for again
    finally:
        worker.close()
    assert processes and all(_ended(process) for process in processes)


def test_a_machine_that_cannot_start_a_worker_draws_the_plots_in_the_main_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process(*args: object, **kwargs: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    # What a process limit or a sandbox makes of a new process; not reproducible for root on a CI machine.
    monkeypatch.setattr(plot_worker.os, "cpu_count", lambda: 2)
    started = plot_worker_for(64)
    assert started is not None  # where processes start, 64 members' plots go to the workers
    started.close()
    monkeypatch.setattr(plot_worker, "ProcessPoolExecutor", no_process)
    assert plot_worker_for(64) is None  # the population trains on; its members' plots are drawn in it
