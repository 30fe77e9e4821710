"""Lightning's MLFlowLogger, stepping per-epoch metrics by epoch and writing them in batches."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only


class EpochMLFlowLogger(MLFlowLogger):
    """Metrics are stepped by epoch (Lightning adds an `epoch` entry to every dict it logs), so the UI
    charts read 0, 1, 2, … and a resumed run continues at the right epoch.

    A sqlite insert costs more than a small model's epoch, so metrics are buffered and written once the
    oldest of them has waited `flush_every_s` seconds, and always before the run closes
    (`tracking.run.finish_run`), after the model is logged: the metrics of the epoch whose weights it
    holds are then written once, linked to it, instead of MLflow reading every metric's history back to
    link them. (MLflow's own async queue costs ~1.7 s to drain at every close, longer than the seed
    experiment trains.)
    """

    def __init__(self, *args: Any, flush_every_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every_s = flush_every_s
        self._pending: list[Any] = []
        # A resumed run replays the epochs after its last checkpoint; those it had logged already
        # (written before a hard kill caught the checkpoint in memory) are not logged twice.
        self.logged_through: dict[str, int] = {}
        self._oldest_pending: float | None = None  # when the buffer last went from empty to not
        # Work that must land in the run before it closes (a plot drawn in the background):
        # `tracking.run.finish_run` runs these first.
        self.before_close: list[Callable[[], None]] = []
        # The process that closes the run; a `ddp_spawn` worker holds a copy of this logger and must
        # write what it buffered before it ends.
        self._owner_pid = os.getpid()
        # A population member's buffered metrics may be handed to another process to write (the
        # population's writer): `hand_off(metrics)` returns what waits until they are written (raising
        # what stopped them). Waited for before a model is logged and before the run closes; the
        # metrics left when the run closes are written here.
        self.hand_off: Callable[[list[Any]], Callable[[], None]] | None = None
        self._handed_off: list[Callable[[], None]] = []

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        step = int(epoch) if epoch is not None else int(step or 0)
        timestamp = int(time.time() * 1000)
        new = [Metric(key=k, value=float(v), timestamp=timestamp, step=step) for k, v in metrics.items()
               if step > self.logged_through.get(k, -1)]
        if new and not self._pending:
            self._oldest_pending = time.monotonic()
        self._pending += new
        self._flush_if_due()

    def _flush_if_due(self) -> None:
        if self._oldest_pending is not None and time.monotonic() - self._oldest_pending >= self.flush_every_s:
            self.flush()

    def link_pending_metrics(self, model_id: str, step: int) -> None:
        """Link the buffered metrics of `step` to a logged model, as MLflow does with those already
        written when the model is logged (its page then shows these weights' scores)."""
        from mlflow.entities import Metric

        self._pending = [
            Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id)
            if m.step == step and m.model_id is None else m
            for m in self._pending
        ]

    @rank_zero_only
    def flush(self) -> None:
        """Write the buffered metrics now, or hand them off."""
        pending, self._pending = self._pending, []
        self._oldest_pending = None
        if self.hand_off is not None and pending:
            self._handed_off.append(self.hand_off(pending))
            return
        from experiments.tracking.run_record import write_metrics

        write_metrics(self.experiment, self.run_id, pending)

    def wait_handed_off(self, raise_errors: bool = True) -> None:
        """Return once the metrics handed off are written (see `hand_off`)."""
        waiting, self._handed_off = self._handed_off, []
        failed: Exception | None = None
        for wait in waiting:  # every one waited for, so none lands after the run is closed
            try:
                _run(wait, raise_errors, "could not write the run's metrics")
            except Exception as err:  # noqa: BLE001 - raised once every one is waited for
                failed = failed or err
        if failed is not None:
            raise failed

    @rank_zero_only
    def save(self) -> None:
        # Lightning calls this as fitting starts and after each dict it logs itself: a write only if due
        # (the clock runs from the oldest buffered value, so setup's seconds never make one due).
        self._flush_if_due()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        # Lightning calls this when fitting ends and again after testing; MLFlowLogger would mark the
        # run FINISHED each time, before the model is logged. `tracking.run.finish_run` writes what is
        # buffered and closes the run once, with the status it really ended with. A `ddp_spawn` worker
        # never gets there: it writes its metrics and background work (the plot) as its fit ends.
        if os.getpid() != self._owner_pid:
            self.write_pending(raise_errors=status == "success")

    def write_pending(self, raise_errors: bool = True) -> None:
        """Finish the work queued for the run (the plot drawn in the background), then write the
        buffered metrics. With `raise_errors` off, a failing piece is a warning (the run is closing as
        failed or killed anyway, and the rest should still land)."""
        self.hand_off = None  # the run is closing: what is still buffered is written here
        self.wait_handed_off(raise_errors)
        pending, self.before_close = self.before_close, []
        for work in pending:
            _run(work, raise_errors, "could not finish a step before closing the run")
        self.flush()


def _run(work: Callable[[], None], raise_errors: bool, warning: str) -> None:
    try:
        work()
    except Exception:
        if raise_errors:
            raise
        logging.getLogger(__name__).warning(warning, exc_info=True)
