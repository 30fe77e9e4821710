"""The worker processes the populations of one launch share: the population writer (`population_writer`)
and the plotting worker (`plot_worker`). Each starts when the first population asks for it and stops
once the launch's last population has closed its runs, so a sweep whose jobs form several populations
(the overfitting study: one of 30 and three of 3) starts each worker once, and its small populations
use them too (on their own they are too small to pay for a worker's start-up)."""

from __future__ import annotations

from typing import Any


class PopulationWorkers:
    """`members`: how many of the launch's jobs train in populations (what the workers are sized for)."""

    def __init__(self, members: int) -> None:
        self.members = members
        self._started: dict[str, Any] = {}

    def writer(self) -> Any:
        """The `population_writer.PopulationWriter`, or None where one does not pay (or cannot start)."""
        if "writer" not in self._started:
            from experiments.population_writer import population_writer_for

            self._started["writer"] = population_writer_for(self.members)
        return self._started["writer"]

    def plots(self) -> Any:
        """The `plot_worker.PlotWorker`, or None where one does not pay (or cannot start)."""
        if "plots" not in self._started:
            from experiments.plot_worker import plot_worker_for

            self._started["plots"] = plot_worker_for(self.members)
        return self._started["plots"]

    def close(self) -> None:
        """Stop them (what the writer still holds, the files of a job that failed as it opened, is written)."""
        started, self._started = self._started, {}
        for worker in started.values():
            if worker is not None:
                worker.close()
