"""Early stopping that hands back the best weights, as Keras' `restore_best_weights=True` does.

Lightning's own `EarlyStopping` stops training but leaves the model at its *last* epoch, which is
`patience` epochs past the best one and, when overfitting, measurably worse.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.utilities import rank_zero_info

from experiments.errors import UserError


class EarlyStopping(LightningEarlyStopping):
    """Lightning's `EarlyStopping` plus `restore_best_weights`; `patience=None` switches it off.

    Keeping the switch-off inside the callback (like `LossThresholdStop(threshold=None)`) makes early
    stopping one override away: `callbacks.early_stopping.patience=10`.

    The best weights are a CPU copy of the module's `state_dict`, taken whenever the monitored value
    improves by more than `min_delta` (the same rule that resets the patience counter), loaded back when
    training ends, and kept in checkpoints so a resumed run can still restore them.
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        patience: int | None = None,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        if patience is not None and int(patience) < 1:
            raise UserError(f"callbacks.early_stopping.patience must be a positive integer or null, got {patience}.")
        if float(min_delta) < 0:
            raise UserError(f"callbacks.early_stopping.min_delta must be >= 0, got {min_delta}.")
        # Checked after each validation (as Lightning does for a monitor that validation publishes).
        kwargs["check_on_train_epoch_end"] = False
        super().__init__(monitor=monitor, patience=int(patience or 1), min_delta=float(min_delta), mode=mode,
                         **kwargs)
        self.enabled = patience is not None
        self.restore_best_weights = bool(restore_best_weights)
        self.best_epoch = -1
        self._best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        previous_best = self.best_score
        super().on_validation_end(trainer, pl_module)
        if self.best_score is not previous_best:  # Lightning replaces best_score only on an improvement
            self.best_epoch = trainer.current_epoch
            if self.restore_best_weights:
                self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enabled:
            super().on_train_epoch_end(trainer, pl_module)

    @property
    def restored_epoch(self) -> int | None:
        """The epoch whose weights training ended with, when this callback restores them; else None."""
        if self.enabled and self.restore_best_weights and self._best_state is not None:
            return self.best_epoch
        return None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        if self.restore_best_weights and self._best_state is not None:
            pl_module.load_state_dict(self._best_state)
            rank_zero_info(f"Early stopping: restored the weights of epoch {self.best_epoch} "
                           f"({self.monitor}={float(self.best_score):.4f}).")
        if trainer.logger is not None and trainer.is_global_zero:
            last = trainer.current_epoch - 1 if trainer.current_epoch > 0 else 0
            # One-off values at step 0: the UI lists them with the run, not as curves against epochs.
            trainer.logger.log_metrics(
                {"early_stopping/best_epoch": float(self.best_epoch),
                 "early_stopping/stopped_epoch": float(self.stopped_epoch or last),
                 "early_stopping/restored": float(self.restore_best_weights and self._best_state is not None)},
                step=0,
            )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["best_epoch"] = self.best_epoch
        state["best_state"] = copy.copy(self._best_state)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_epoch = int(state_dict.get("best_epoch", -1))
        self._best_state = state_dict.get("best_state")
