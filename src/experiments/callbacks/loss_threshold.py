"""The seed tutorial's stopping rule: stop once the training loss reaches a threshold."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info


class LossThresholdStop(pl.Callback):
    """Stops training when `monitor` (default the eval-mode training loss) is <= `threshold`.

    The decision is made from the epoch's already-synced metric, so every DDP rank stops together.
    """

    def __init__(self, threshold: float | None, monitor: str = "train/loss") -> None:
        self.threshold = None if threshold is None else float(threshold)  # None: rule switched off
        self.monitor = monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.threshold is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) <= self.threshold:
            rank_zero_info(f"{self.monitor}={float(value):.4f} reached the threshold {self.threshold}; stopping.")
            trainer.should_stop = True
