"""The LightningModule: loss + regularization + metrics + optimizer around a plain `nn.Module`."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from experiments.models.epoch_metrics import EpochOutputs
from experiments.models.optim import optimizer_factory, scheduler_config
from experiments.models.regularization import add_input_noise, apply_max_norm, weight_penalty
from experiments.models.tasks import main_metric, task_loss
from experiments.timing import mark


class ExperimentModule(pl.LightningModule):
    """Trains `net` for `task`.

    Per epoch it logs `train/*` and `val/*` metrics, where the training-set metrics come from an
    eval-mode pass over the training split (the second validation dataloader), so dropout and input
    noise cannot fake a generalization gap; `gap/loss` = val − train loss and `gap/<main>` =
    train − val of the main metric; `<monitor>_best` and `<monitor>_best_epoch` summarize the run.
    """

    def __init__(
        self,
        net: nn.Module,
        task: str,
        num_classes: int,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        regularization: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
        class_weights: list[float] | tuple[float, ...] | None = None,
        target_scale: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self.optimizer_cfg = dict(optimizer or {})  # none: a module that is only evaluated
        self.scheduler_cfg = dict(scheduler or {})
        reg = dict(regularization or {})
        self.l1 = float(reg.get("l1", 0.0))
        self.l2 = float(reg.get("l2", 0.0))
        self.input_noise = float(reg.get("input_noise", 0.0))
        self.label_smoothing = float(reg.get("label_smoothing", 0.0)) if task != "regression" else 0.0
        self.max_norm = float(reg.get("max_norm", 0.0))
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.main_metric = main_metric(task)
        # Weights of the optimized loss only: reported losses stay unweighted, comparable across settings.
        self.class_weights = None if class_weights is None else torch.tensor(list(class_weights))

        # Loss and metrics of each evaluated split, scored once per epoch (see epoch_metrics.py).
        self.train_outputs = EpochOutputs(task, num_classes, target_scale)
        self.val_outputs = EpochOutputs(task, num_classes, target_scale)
        self.test_outputs = EpochOutputs(task, num_classes, target_scale)
        # Running mean of what the optimizer minimized (loss + penalties), summed on-device per epoch.
        self._objective_sum = torch.zeros(())
        self._objective_steps = 0
        self.best_epoch = -1
        self._best_value = math.inf if monitor_mode == "min" else -math.inf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        output = self.net(add_input_noise(x, self.input_noise))
        loss = task_loss(output, y, self.task, self.label_smoothing, self.class_weights)
        penalty = weight_penalty(self.net, self.l1, self.l2)
        return loss if penalty is None else loss + penalty

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self._objective(x, y)
        # Summed on-device and read once per epoch: no host sync per step.
        self._objective_sum += loss.detach()
        self._objective_steps += 1
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.max_norm > 0:  # after the optimizer step: the constraint holds for the weights it made
            apply_max_norm(self.net, self.max_norm)

    def on_train_epoch_start(self) -> None:
        self._objective_sum = torch.zeros((), device=self.device)
        self._objective_steps = 0

    def on_train_epoch_end(self) -> None:
        mark("epoch_end")  # the last one closes the training phase of `experiments bench`'s split

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        # The training split comes second, evaluated in eval mode like the validation split.
        (self.val_outputs if dataloader_idx == 0 else self.train_outputs).update(self.net(x), y)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.test_outputs.update(self.net(x), y)

    @staticmethod
    def _scored(outputs: EpochOutputs, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}/{name}": value for name, value in outputs.compute().items()}

    def on_validation_epoch_end(self) -> None:
        values = self._scored(self.val_outputs, "val")
        has_train_pass = self.train_outputs.update_count > 0 or self.trainer.world_size > 1
        if has_train_pass:
            values.update(self._scored(self.train_outputs, "train"))
            values["gap/loss"] = values["val/loss"] - values["train/loss"]
            main = self.main_metric
            values[f"gap/{main}"] = values[f"train/{main}"] - values[f"val/{main}"]
        if self._objective_steps > 0:
            mean = self._objective_sum / self._objective_steps
            values["train/objective"] = self.trainer.strategy.reduce(mean, reduce_op="mean")
        self.val_outputs.reset()
        self.train_outputs.reset()
        if self.trainer.sanity_checking:
            return
        if self.monitor in values:
            current = float(values[self.monitor])  # one host sync per epoch, not per step
            improved = current < self._best_value if self.monitor_mode == "min" else current > self._best_value
            if improved or self.best_epoch < 0:
                self._best_value, self.best_epoch = current, self.current_epoch
            values[f"{self.monitor}_best"] = torch.tensor(self._best_value)
            values[f"{self.monitor}_best_epoch"] = torch.tensor(float(self.best_epoch))
        # `epoch` is the key Lightning adds to every logged dict (the logger steps by it); logged here
        # too it is among the callback metrics, which a `ddp_spawn` launcher gets back from rank 0.
        values["epoch"] = torch.tensor(float(self.current_epoch))
        # The values are already gathered across ranks (EpochOutputs), so syncing them again is a no-op
        # mean; `sync_dist` only keeps Lightning's advice about unsynced epoch values quiet under DDP.
        self.log_dict(values, on_epoch=True, batch_size=1, add_dataloader_idx=False,
                      sync_dist=self.trainer.world_size > 1)

    def on_test_epoch_end(self) -> None:
        values = self._scored(self.test_outputs, "test")
        self.test_outputs.reset()
        # One value per run, at step 0 (a logged `step` is Lightning's x-axis override): listed with
        # the run in the UI, not drawn as a curve. Read back with `tested_metrics`.
        self.log_dict({**values, "step": 0.0}, on_epoch=True, batch_size=1, add_dataloader_idx=False,
                      sync_dist=self.trainer.world_size > 1)

    def configure_optimizers(self) -> Any:
        optimizer = optimizer_factory(self.optimizer_cfg)(self.net.parameters())
        scheduler = scheduler_config(self.scheduler_cfg, optimizer, self.monitor)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The best-so-far summary must survive a resume, like the optimizer state does.
        checkpoint["experiments"] = {"best_epoch": self.best_epoch, "best_value": self._best_value}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("experiments", {})
        self.best_epoch = int(extra.get("best_epoch", -1))
        self._best_value = float(extra.get("best_value", self._best_value))


def tested_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The `test/*` scores of the `trainer.test` that just ran (Lightning clears `callback_metrics` as a
    stage starts, and carries them back from `ddp_spawn` workers)."""
    return {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("test/")}
