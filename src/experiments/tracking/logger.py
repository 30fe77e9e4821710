"""Lightning's MLFlowLogger, stepping per-epoch metrics by epoch (the UI's x-axis users expect)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only


class EpochMLFlowLogger(MLFlowLogger):
    """Lightning adds an `epoch` entry to every metrics dict it logs; use it as the MLflow step.

    Metric logging is per epoch in this project, so the step axis reads 0, 1, 2, … in the UI charts,
    and a resumed run continues at the right epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Metrics go through MLflow's async queue: a sqlite insert per epoch costs more than a small
        # model's epoch. `flush` (called before the run is closed) waits for the queue to drain.
        kwargs.setdefault("synchronous", False)
        super().__init__(*args, **kwargs)

    @rank_zero_only
    def flush(self) -> None:
        if self._initialized:
            self._mlflow_client._tracking_client.store.flush_async_logging()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()
        super().finalize(status)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        if epoch is not None:
            step = int(epoch)
        if metrics:
            super().log_metrics(metrics, step)
