"""The LightningModule: loss + regularization + metrics + optimizer around a plain `nn.Module`."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from experiments.models.optim import build_optimizer, build_scheduler
from experiments.models.regularization import add_input_noise, apply_max_norm, weight_penalty
from experiments.models.tasks import build_metrics, main_metric, task_loss


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
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        regularization: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self.optimizer_cfg = dict(optimizer)
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        reg = dict(regularization or {})
        self.l1 = float(reg.get("l1", 0.0))
        self.l2 = float(reg.get("l2", 0.0))
        self.input_noise = float(reg.get("input_noise", 0.0))
        self.label_smoothing = float(reg.get("label_smoothing", 0.0)) if task != "regression" else 0.0
        self.max_norm = float(reg.get("max_norm", 0.0))
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.main_metric = main_metric(task)

        metrics = build_metrics(task, num_classes)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.objective = MeanMetric()  # running mean of what the optimizer minimized (loss + penalties)
        self.best_epoch = -1
        self._best_value = math.inf if monitor_mode == "min" else -math.inf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        output = self.net(add_input_noise(x, self.input_noise))
        loss = task_loss(output, y, self.task, self.label_smoothing)
        penalty = weight_penalty(self.net, self.l1, self.l2)
        if penalty is not None:
            loss = loss + penalty
        # Accumulated on-device; read once per epoch, so no host sync per step.
        self.objective.update(loss.detach())
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.max_norm > 0:
            apply_max_norm(self.net, self.max_norm)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], loss_metric: MeanMetric, metrics: Any) -> None:
        x, y = batch
        output = self.net(x)
        loss_metric.update(task_loss(output, y, self.task), weight=len(y))
        metrics.update(output.squeeze(-1) if self.task != "multiclass" else output, y)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0:
            self._evaluate(batch, self.val_loss, self.val_metrics)
        else:  # the training split, in eval mode
            self._evaluate(batch, self.train_loss, self.train_metrics)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        values = {"val/loss": self.val_loss.compute(), **self.val_metrics.compute()}
        has_train_pass = self.train_loss.update_count > 0 or self.trainer.world_size > 1
        if has_train_pass:
            values.update({"train/loss": self.train_loss.compute(), **self.train_metrics.compute()})
            values["gap/loss"] = values["val/loss"] - values["train/loss"]
            main = self.main_metric
            values[f"gap/{main}"] = values[f"train/{main}"] - values[f"val/{main}"]
        if self.objective.update_count > 0 or self.trainer.world_size > 1:
            values["train/objective"] = self.objective.compute()
        for metric in (self.val_loss, self.val_metrics, self.train_loss, self.train_metrics, self.objective):
            metric.reset()
        if self.trainer.sanity_checking:
            return
        if self.monitor in values:
            current = float(values[self.monitor])  # one host sync per epoch, not per step
            improved = current < self._best_value if self.monitor_mode == "min" else current > self._best_value
            if improved or self.best_epoch < 0:
                self._best_value, self.best_epoch = current, self.current_epoch
            values[f"{self.monitor}_best"] = torch.tensor(self._best_value)
            values[f"{self.monitor}_best_epoch"] = torch.tensor(float(self.best_epoch))
        self.log("val/loss", values.pop("val/loss"), prog_bar=True)  # values are synced already
        self.log_dict(values)

    def on_test_epoch_end(self) -> None:
        values = {"test/loss": self.test_loss.compute(), **self.test_metrics.compute()}
        self.test_loss.reset()
        self.test_metrics.reset()
        self.log_dict(values)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.net.parameters(), **self.optimizer_cfg)
        scheduler = build_scheduler(
            optimizer,
            monitor=self.monitor,
            mode=self.monitor_mode,
            max_epochs=self.trainer.max_epochs or 1,
            **self.scheduler_cfg,
        )
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The best-so-far summary must survive a resume, like the optimizer state does.
        checkpoint["experiments"] = {"best_epoch": self.best_epoch, "best_value": self._best_value}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("experiments", {})
        self.best_epoch = int(extra.get("best_epoch", -1))
        self._best_value = float(extra.get("best_value", self._best_value))
