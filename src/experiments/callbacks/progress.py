"""Rich progress bar that counts optimizer steps, without Lightning's `v_num` (an MLflow run id fragment
that means nothing here)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """Lightning's bar counts training items; one item may carry several optimizer steps
    (`steps_per_item`), which would show the seed's 22 steps an epoch as `1/1`. This bar counts the
    epoch's steps instead (its total and its speed are optimizer steps), as a hand-written loop's would."""

    _epoch_start_step = 0

    @property
    def total_train_batches(self) -> int | float:
        steps_per_item = _steps_per_item(self.trainer)
        if steps_per_item == 1:
            return super().total_train_batches
        steps = self.trainer.datamodule.steps_per_epoch
        if self.trainer.max_steps > 0:  # the last epoch may stop early at `trainer.max_steps`
            steps = min(steps, self.trainer.max_steps - self.trainer.global_step)
        return steps

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start_step = trainer.global_step
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # counts the item
        if _steps_per_item(trainer) > 1 and self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, completed=trainer.global_step - self._epoch_start_step)
            self.refresh()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        val_loss = trainer.callback_metrics.get("val/loss")  # published per epoch by ExperimentModule
        if val_loss is not None:
            metrics["val/loss"] = f"{float(val_loss):.4f}"
        return metrics


def _steps_per_item(trainer: pl.Trainer) -> int:
    return int(getattr(trainer.datamodule, "steps_per_item", 1) or 1)
