"""Lightning's MLFlowLogger, stepping per-epoch metrics by epoch and writing them in batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only


class EpochMLFlowLogger(MLFlowLogger):
    """Metrics are stepped by epoch (Lightning adds an `epoch` entry to every dict it logs), so the UI
    charts read 0, 1, 2, … and a resumed run continues at the right epoch.

    A sqlite insert costs more than a small model's epoch, so metrics are buffered and written at most
    every `flush_every_s` seconds, and always before the run is finalized or closed. (MLflow's own async
    queue costs ~1.7 s to drain at every close, longer than the seed experiment trains.)
    """

    def __init__(self, *args: Any, flush_every_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every_s = flush_every_s
        self._pending: list[Any] = []
        # A resumed run replays the epochs after its last checkpoint; those it had logged already
        # (written before a hard kill caught the checkpoint in memory) are not logged twice.
        self.logged_through: dict[str, int] = {}
        self._last_write = time.monotonic()
        # Work that must land in the run before it closes (a plot drawn in the background):
        # `tracking.run.finish_run` runs these first.
        self.before_close: list[Callable[[], None]] = []

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        step = int(epoch) if epoch is not None else int(step or 0)
        timestamp = int(time.time() * 1000)
        self._pending += [Metric(key=k, value=float(v), timestamp=timestamp, step=step) for k, v in metrics.items()
                          if step > self.logged_through.get(k, -1)]
        if time.monotonic() - self._last_write >= self.flush_every_s:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write the buffered metrics now (MLflow takes at most 1000 per call)."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 1000):
            self.experiment.log_batch(run_id=self.run_id, metrics=pending[start : start + 1000])
        self._last_write = time.monotonic()

    @rank_zero_only
    def save(self) -> None:
        # Lightning calls this as fitting starts (and after metrics it logs itself): writing here also
        # restarts the clock, so a fast first epoch does not pay for the seconds of setup before it.
        self.flush()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        # Lightning calls this when fitting ends and again after testing; MLFlowLogger would mark the
        # run FINISHED each time, before the model is logged. `tracking.run.finish_run` closes the run
        # once, with the status it really ended with.
        self.flush()
