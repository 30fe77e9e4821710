"""The worker process that draws a population's learning curves: its plots, and what happens when it
does not answer in time (the plots are drawn in the main process and closing does not wait for it)."""

from __future__ import annotations

from experiments.plot_worker import PlotWorker

HISTORY = {"train/loss": {0: 0.7, 1: 0.6}, "val/loss": {0: 0.72, 1: 0.65},
           "train/acc": {0: 0.5, 1: 0.6}, "val/acc": {0: 0.48, 1: 0.55}}


def _is_png(path: object) -> bool:
    return path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[attr-defined]


def test_the_worker_draws_each_members_plot() -> None:
    worker = PlotWorker()
    try:
        worker.submit(1, HISTORY, "acc", "curve.png")
        worker.submit(2, HISTORY, "acc", "curve.png")
        first, second = worker.path(1), worker.path(2)
        assert _is_png(first) and _is_png(second) and first != second
        assert worker.path(3) is None  # never submitted
    finally:
        worker.close()


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
    for process in processes:
        process.join(timeout=10)
        assert not process.is_alive()
