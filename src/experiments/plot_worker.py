"""A population's learning-curve PNGs drawn in worker processes while the main process records the
members' runs: drawing is CPU work, and closing a population's runs one after another leaves a second
core idle. The workers start (and import Matplotlib) while the population trains. Off with
`EXPERIMENTS_NO_SPEEDUPS=plot_worker`; not used on one core or for few members."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from experiments.learning_curve_plot import plot_learning_curve
from experiments.timing import mark
from experiments.worker_process import pool_options

MIN_MEMBERS = 4  # below this the worker's start-up (~0.5 s of imports) costs more than it saves
# From this many members on, two workers: one draws a plot (~0.08 s) more slowly than the main process
# closes a run that logs no model, so closing would wait on it.
TWO_WORKERS_FROM = 16
WAIT_S = 60.0  # a plot not drawn by then (a hung worker) is drawn here, and so is every later one


class PlotWorker:
    """`submit` a member's plot after training; `path` gives its PNG, drawn here if the worker failed."""

    def __init__(self, wait_s: float = WAIT_S, workers: int = 1) -> None:
        self.wait_s = wait_s
        self._stuck = False
        self._pool = ProcessPoolExecutor(max_workers=workers, **pool_options())
        for _ in range(workers):  # a spawned pool starts a process per task waiting: started now, not after training
            self._pool.submit(_ready)
        mark("plot_worker_start")
        self._folder = Path(tempfile.mkdtemp(prefix="learning-curves-"))
        self._jobs: dict[int, tuple[Future, dict[str, dict[int, float]], str, Path]] = {}
        self._count = itertools.count()

    def submit(self, key: int, history: dict[str, dict[int, float]], metric: str, filename: str) -> None:
        # A folder per plot: populations one after another may submit the same key (a member's `id`).
        path = self._folder / str(next(self._count)) / filename
        self._jobs[key] = (self._pool.submit(plot_learning_curve, history, metric, path), history, metric, path)

    def path(self, key: int) -> Path | None:
        """The member's PNG (None when it was not submitted), handed out once."""
        if key not in self._jobs:
            return None
        future, history, metric, path = self._jobs.pop(key)
        if not self._stuck:
            try:
                return future.result(timeout=self.wait_s)
            except TimeoutError:
                self._stuck = True
            except Exception:  # noqa: BLE001, S110 - a worker that died or failed: the plot is drawn here instead
                pass
        return plot_learning_curve(history, metric, path)

    def close(self) -> None:
        if self._stuck:  # a hung worker would hold the shutdown (and the interpreter's exit) for ever
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.kill()
        self._pool.shutdown(wait=not self._stuck, cancel_futures=True)
        shutil.rmtree(self._folder, ignore_errors=True)


def _ready() -> None:
    """A worker's first task: load what drawing needs."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401


def plot_worker_for(members: int) -> PlotWorker | None:
    from experiments.speedups import enabled

    if not enabled("plot_worker") or members < MIN_MEMBERS or (os.cpu_count() or 1) < 2:
        return None
    try:
        return PlotWorker(workers=2 if members >= TWO_WORKERS_FROM else 1)
    except OSError:  # no process can be started here (a limit, a sandbox): the plots are drawn in this one
        return None
