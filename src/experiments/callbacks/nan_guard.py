"""Stop at the first NaN/inf training loss with advice, instead of training on garbage."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch


class NonFiniteLossError(RuntimeError):
    """Raised by `NanGuard`; train() marks the MLflow run FAILED with this message as the reason."""


class NanGuard(pl.Callback):
    """Checks the step loss every `check_every` steps (a host sync each time, so not every step by default
    on long runs; the seed-sized runs check every step)."""

    def __init__(self, check_every: int = 1) -> None:
        self.check_every = max(1, int(check_every))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx % self.check_every:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"Training loss became {float(loss)} at epoch {trainer.current_epoch}, step {trainer.global_step}: "
                "lower optimizer.lr, clip gradients (trainer.gradient_clip_val=1.0) or try another optimizer."
            )
