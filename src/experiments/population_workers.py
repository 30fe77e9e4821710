"""The worker processes the populations of one launch share: the population writer (`population_writer`)
and the plotting worker (`plot_worker`). Each starts when the first population asks for it and stops
once the launch's last population has closed its runs, so a sweep whose jobs form several populations
(the overfitting study: one of 30 and three of 3) starts each worker once, and its small populations
use them too (on their own they are too small to pay for a worker's start-up)."""

from __future__ import annotations

from experiments.plot_worker import PlotWorker, plot_worker_for
from experiments.population_writer import PopulationWriter, population_writer_for


class PopulationWorkers:
    """`members`: how many of the launch's jobs train in populations (what the workers are sized for)."""

    def __init__(self, members: int) -> None:
        self.members = members
        # None: not asked for yet; then the worker, or None where one does not pay (or cannot start).
        self._writer: tuple[PopulationWriter | None] | None = None
        self._plots: tuple[PlotWorker | None] | None = None

    def writer(self) -> PopulationWriter | None:
        if self._writer is None:
            self._writer = (population_writer_for(self.members),)
        return self._writer[0]

    def plots(self) -> PlotWorker | None:
        if self._plots is None:
            self._plots = (plot_worker_for(self.members),)
        return self._plots[0]

    def close(self) -> None:
        """Stop them (what the writer still holds, the files of a job that failed as it opened, is written)."""
        started = [worker for asked in (self._writer, self._plots) if asked is not None for worker in asked]
        self._writer = self._plots = None
        for worker in started:
            if worker is not None:
                worker.close()
