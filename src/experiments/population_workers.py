"""The worker processes a sweep's populations share: the population writer (`population_writer`) and the
plotting worker (`plot_worker`). Each starts when a population first asks for it, once the launch asking
has enough members to pay for it, and stays until the sweep process ends: a sweep whose jobs form several
populations (the overfitting study: one of 30 and three of 3) or come in batches (an Optuna sweep's
`n_jobs` trials at a time) starts each worker once, and its small populations use them too (on their own
they are too small to pay for a worker's start-up)."""

from __future__ import annotations

from experiments.plot_worker import PlotWorker, plot_worker_for
from experiments.population_writer import PopulationWriter, population_writer_for


class PopulationWorkers:
    """`members`: how many jobs of the launch now running train in populations (what decides whether a
    worker not started yet pays for its start, and how many plot workers start)."""

    def __init__(self, members: int) -> None:
        self.members = members
        self._writer: PopulationWriter | None = None
        self._plots: PlotWorker | None = None

    def writer(self) -> PopulationWriter | None:
        if self._writer is None:
            self._writer = population_writer_for(self.members)
        return self._writer

    def plots(self) -> PlotWorker | None:
        if self._plots is None:
            self._plots = plot_worker_for(self.members)
        return self._plots

    def close(self) -> None:
        """Stop them (what the writer still holds, the files of a job that failed as it opened, is written)."""
        started = [worker for worker in (self._writer, self._plots) if worker is not None]
        self._writer = self._plots = None
        for worker in started:
            worker.close()
