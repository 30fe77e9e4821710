"""Stop at the first NaN/inf training loss with advice, instead of training on garbage."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from experiments.errors import non_finite_message


class NonFiniteLossError(RuntimeError):
    """Raised by `NanGuard`; train() marks the MLflow run FAILED with this message as the reason."""


class NanGuard(pl.Callback):
    """Reads the losses every `check_every` batches (a host sync each time). Between reads the first
    non-finite batch of the epoch is noted on the device, so the stop always names that batch."""

    def __init__(self, check_every: int = 1) -> None:
        self.check_every = max(1, int(check_every))
        self._first_bad: torch.Tensor | None = None  # the epoch's first batch with a non-finite loss, else -1
        self._last_loss = torch.zeros(())
        self._epoch = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_bad = None
        self._epoch = trainer.current_epoch  # by the end of fitting Lightning has counted one more

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        bad = ~torch.isfinite(loss.detach()).all()
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), batch_idx, self._first_bad)
        self._last_loss = loss.detach()
        if (batch_idx + 1) % self.check_every == 0 or batch_idx + 1 >= trainer.num_training_batches:
            self._check(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)  # `trainer.max_steps` may end an epoch between two reads

    def _check(self, trainer: pl.Trainer) -> None:
        first = int(self._first_bad) if self._first_bad is not None else -1
        if first >= 0:
            raise NonFiniteLossError(non_finite_message(float(self._last_loss), self._epoch, first))
