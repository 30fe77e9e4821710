"""Rich progress bar without Lightning's `v_num` (an MLflow run id fragment that means nothing here),
showing the epoch's validation loss instead."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        val_loss = trainer.callback_metrics.get("val/loss")  # published per epoch by ExperimentModule
        if val_loss is not None:
            metrics["val/loss"] = f"{float(val_loss):.4f}"
        return metrics
