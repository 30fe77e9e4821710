"""The LightningModule of a population: K members trained together, each as if trained alone.

Automatic optimization, one optimizer step per `training_step`: the step's loss is the sum of the
members' losses, so each member's gradient is its own loss's gradient. The optimizer's parameter groups
carry the members' options (lr, betas, momentum, weight decay …): members with the same options share one
(contiguous in the population, see `optimizer_groups`). A member that stops — early stopping, the loss
threshold, a non-finite loss — is frozen: its loss leaves the sum, and its weights are put back as they
stopped after every optimizer step (its slice of a stacked tensor is stepped with the others). Its best
weights (by the monitor, as the single run's checkpoint keeps them) are kept in memory for testing and
logging.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch

from experiments.errors import non_finite_message
from experiments.models.optim import fused_option, optimizer_class, scheduler_config
from experiments.models.population_metrics import PopulationOutputs
from experiments.models.population_net import PopulationNet, group_runs
from experiments.models.tasks import main_metric, member_task_losses, task_loss


@dataclass
class MemberSettings:
    """What may differ between members (everything else is shared by the population)."""

    optimizer: dict[str, Any]  # the group's options: lr, betas, momentum, weight_decay …
    l1: float = 0.0
    l2: float = 0.0
    label_smoothing: float = 0.0
    max_norm: float = 0.0
    patience: int | None = None  # early stopping off when None
    min_delta: float = 0.0
    loss_threshold: float | None = None
    threshold_monitor: str = "train/loss"


@dataclass
class MemberState:
    """Where a member stands: its best epoch and weights, whether and why it stopped."""

    best_value: float
    best_epoch: int = -1
    best_weights: dict[str, torch.Tensor] | None = None
    es_best: float = math.nan  # early stopping's own best (with min_delta) and its patience counter
    es_best_epoch: int = -1
    wait: int = 0
    stopped_epoch: int | None = None  # the last epoch it trained
    failure: str | None = None  # why it failed (a non-finite loss)
    pruned: str | None = None  # the pruner's words, when its Optuna trial was pruned
    history: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch → logged values

    @property
    def active(self) -> bool:
        return self.stopped_epoch is None and self.failure is None


def optimizer_groups(settings: Sequence[MemberSettings]) -> list[int]:
    """Each member's optimizer group, numbered as first met: members with the same options share one."""
    ids: dict[str, int] = {}
    return [ids.setdefault(json.dumps(s.optimizer, sort_keys=True, default=repr), len(ids)) for s in settings]


class PopulationModule(pl.LightningModule):
    def __init__(self, net: PopulationNet, members: list[MemberSettings], task: str, num_classes: int,
                 optimizer_target: str, fused: Any, scheduler: dict[str, Any] | None,
                 monitor: str = "val/loss", monitor_mode: str = "min",
                 class_weights: list[float] | tuple[float, ...] | None = None,
                 target_scale: tuple[float, float] | None = None) -> None:
        super().__init__()
        groups = optimizer_groups(members)
        if group_runs(groups) != net.group_bounds:
            raise ValueError("the network's groups must be the members' optimizer groups")
        self.net = net
        self.settings = members
        self._frozen: dict[int, dict[str, torch.Tensor]] = {}  # stopped member → its weights as it stopped
        self.task = task
        self.optimizer_target = optimizer_target
        self.fused = fused  # optimizer.fused, shared: true | false | auto
        self.scheduler_cfg = dict(scheduler or {})
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.main_metric = main_metric(task)
        self.class_weights = None if class_weights is None else torch.tensor(list(class_weights))
        if task == "regression":
            for settings in members:
                settings.label_smoothing = 0.0
        worst = math.inf if monitor_mode == "min" else -math.inf
        self.states = [MemberState(best_value=worst) for _ in members]
        size = len(members)
        self.val_outputs = PopulationOutputs(task, num_classes, target_scale)
        self.train_outputs = PopulationOutputs(task, num_classes, target_scale)
        self.test_outputs = PopulationOutputs(task, num_classes, target_scale)
        self._objective_sum = torch.zeros(size)
        self._objective_steps = 0
        self.test_scores: list[dict[str, float]] = [{} for _ in members]

    def _member_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's loss, as its run alone computes it: the task's loss, plus its L1/L2 penalty."""
        output = self.net(x)
        losses = member_task_losses(output, y, self.task, [s.label_smoothing for s in self.settings],
                                    self.class_weights)
        if losses is None:
            losses = torch.stack([task_loss(output[m], y[m], self.task, settings.label_smoothing, self.class_weights)
                                  for m, settings in enumerate(self.settings)])
        penalties = self.net.weight_penalties([s.l1 for s in self.settings], [s.l2 for s in self.settings])
        return losses if penalties is None else losses + penalties

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        losses = self._member_losses(x, y)
        active = torch.tensor([state.active for state in self.states], device=losses.device)
        finite = torch.isfinite(losses.detach())
        if not bool((finite | ~active).all()):  # one host read per step, as the single run's NaN check
            self._fail_members(losses.detach(), finite, active, batch_idx)
            active = torch.tensor([state.active for state in self.states], device=losses.device)
        self._objective_sum += torch.where(active, losses.detach(), 0.0)
        self._objective_steps += 1
        # Members that stopped leave the sum: no gradient reaches them, the optimizer skips them.
        return torch.where(active, losses, 0.0).sum()

    def _fail_members(self, losses: torch.Tensor, finite: torch.Tensor, active: torch.Tensor, batch_idx: int) -> None:
        for m in torch.nonzero(~finite & active).flatten().tolist():
            self.states[m].failure = non_finite_message(float(losses[m]), self.current_epoch, batch_idx)
        self._stop_when_none_left()

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # A stopped member's loss left the sum, but its weights still took part in the batched forward, so
        # they hold zero gradients, and Adam's momentum or weight decay would still move them: its norm
        # layers get no gradient (the optimizer skips them), its stacked slices are put back after the step.
        for m, state in enumerate(self.states):
            if not state.active:
                if m not in self._frozen:
                    self._frozen[m] = self.net.member_state(m)
                self.net.zero_member_grads(m)  # no NaN of a failed member in the optimizer's state
                for parameter in self.net.norm_parameters(m):
                    parameter.grad = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for m, weights in self._frozen.items():
            self.net.load_member_state(m, weights, linear_only=True)
        for m, settings in enumerate(self.settings):
            if settings.max_norm > 0 and self.states[m].active:  # after the step, as a run alone does
                self.net.apply_max_norm(m, settings.max_norm)

    def on_train_epoch_start(self) -> None:
        self._objective_sum = torch.zeros(len(self.settings), device=self.device)
        self._objective_steps = 0

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        output = self.net(x)
        (self.val_outputs if dataloader_idx == 0 else self.train_outputs).update(output, y)

    def on_validation_epoch_end(self) -> None:
        active = [m for m, state in enumerate(self.states) if state.active]
        if not self.trainer.sanity_checking and active:
            val = self.val_outputs.compute(active)
            train = self.train_outputs.compute(active) if self.train_outputs.update_count > 0 else None
            for i, m in enumerate(active):
                self.states[m].history[self.current_epoch] = self._epoch_values(m, val[i], None if train is None else train[i])
                self._after_epoch(m)
        self.val_outputs.reset()
        self.train_outputs.reset()
        if not self.trainer.sanity_checking:
            self._stop_when_none_left()

    def _epoch_values(self, m: int, val: dict[str, float], train: dict[str, float] | None) -> dict[str, float]:
        """The values a run alone logs for this epoch (see `ExperimentModule.on_validation_epoch_end`)
        from the member's scores of the validation and (if evaluated) training split."""
        values = {f"val/{k}": v for k, v in val.items()}
        if train is not None:
            values.update({f"train/{k}": v for k, v in train.items()})
            values["gap/loss"] = values["val/loss"] - values["train/loss"]
            main = self.main_metric
            values[f"gap/{main}"] = values[f"train/{main}"] - values[f"val/{main}"]
        if self._objective_steps > 0:
            values["train/objective"] = float(self._objective_sum[m] / self._objective_steps)
        state = self.states[m]
        if self.monitor in values:
            current = values[self.monitor]
            improved = current < state.best_value if self.monitor_mode == "min" else current > state.best_value
            if improved or state.best_epoch < 0:
                state.best_value, state.best_epoch = current, self.current_epoch
                # Kept where the member trains (on a GPU the population stays on the device).
                state.best_weights = self.net.member_state(m)
            values[f"{self.monitor}_best"] = state.best_value
            values[f"{self.monitor}_best_epoch"] = float(state.best_epoch)
        return values

    def _after_epoch(self, m: int) -> None:
        """Early stopping (Lightning's rule: improve by more than `min_delta` within `patience` checks)
        and the loss threshold, per member."""
        settings, state, values = self.settings[m], self.states[m], self.states[m].history[self.current_epoch]
        epoch = self.current_epoch
        if settings.patience is not None and self.monitor in values:
            current = values[self.monitor]
            sign = 1 if self.monitor_mode == "min" else -1
            if not math.isfinite(current):
                state.stopped_epoch = epoch
            elif math.isnan(state.es_best) or sign * (current - state.es_best) < -settings.min_delta:
                state.es_best, state.es_best_epoch, state.wait = current, epoch, 0
            else:
                state.wait += 1
                if state.wait >= settings.patience:
                    state.stopped_epoch = epoch
        threshold = settings.loss_threshold
        value = values.get(settings.threshold_monitor)
        if threshold is not None and value is not None and value <= threshold:
            state.stopped_epoch = epoch

    def prune_member(self, m: int, message: str) -> None:
        """Its Optuna trial was pruned: the member stops here, like a run alone that was pruned."""
        self.states[m].pruned = message
        self.states[m].stopped_epoch = self.current_epoch
        self._stop_when_none_left()

    def _stop_when_none_left(self) -> None:
        if not any(state.active for state in self.states):
            self.trainer.should_stop = True

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.test_outputs.update(self.net(x), y)

    def on_test_epoch_end(self) -> None:
        members = list(range(len(self.settings)))
        self.test_scores = [{f"test/{k}": v for k, v in scores.items()} for scores in self.test_outputs.compute(members)]
        self.test_outputs.reset()

    def use_best_weights(self) -> None:
        """Each member back at its best epoch's weights (what a run alone tests and logs)."""
        for m, state in enumerate(self.states):
            if state.best_weights is not None:
                self.net.load_member_state(m, state.best_weights)

    def best_member(self) -> int | None:
        """The member with the best monitored value (of those that did not fail), or None."""
        candidates = [(state.best_value, m) for m, state in enumerate(self.states)
                      if state.failure is None and state.pruned is None and state.best_epoch >= 0]
        if not candidates:
            return None
        return (min if self.monitor_mode == "min" else max)(candidates)[1]

    def configure_optimizers(self) -> Any:
        cls = optimizer_class(self.optimizer_target)
        # One group per distinct set of options, holding the stacked parameters of every member that has
        # it: the update is elementwise, so a member's steps are those of a group of its own.
        groups = [{"params": self.net.group_parameters(g), **self.settings[start].optimizer}
                  for g, (start, _end) in enumerate(self.net.group_bounds)]
        params = [p for group in groups for p in group["params"]]
        # The first member's options are the defaults; every group sets its own anyway.
        optimizer = cls(groups, **self.settings[0].optimizer, **fused_option(cls, self.fused, params))
        scheduler = scheduler_config(self.scheduler_cfg, optimizer, self.monitor)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
