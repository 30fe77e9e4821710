"""One split's evaluation metrics per epoch: outputs gathered during the pass, scored once at its end.

A `MetricCollection` of accuracy, AUROC and F1 plus a `MeanMetric` for the loss cost ~2 ms per split
and epoch in update/compute/reset machinery (measured on 150 samples), more than the seed model's
whole evaluation. `EpochOutputs` is a single torchmetrics `Metric` whose states are the raw outputs
and targets (`cat`-reduced, so DDP ranks with uneven shards are gathered correctly); `compute`
scores them in one go. Binary accuracy and F1 are two lines of counting (checked against torchmetrics
in the tests); AUROC and the multiclass and regression metrics are torchmetrics' functional ones.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score
from torchmetrics.functional.classification import (
    binary_auroc,
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_f1_score,
)
from torchmetrics.utilities import dim_zero_cat

from experiments.models.tasks import task_loss


def binary_scores(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """acc, F1 (of class 1, 0 when undefined) and AUROC from logits, threshold 0.5 on the probability."""
    probability = torch.sigmoid(logits)
    predicted = probability >= 0.5
    actual = target.bool()
    true_positive = (predicted & actual).sum()
    wrong = (predicted != actual).sum()
    denominator = 2 * true_positive + wrong
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), 0.0)
    return {
        "acc": 1 - wrong / max(len(target), 1),
        "auroc": binary_auroc(probability, target.long(), validate_args=False),
        "f1": f1,
    }


def task_scores(output: torch.Tensor, target: torch.Tensor, task: str, num_classes: int) -> dict[str, torch.Tensor]:
    """The task's metrics (see `tasks.main_metric`) from the head's raw outputs."""
    if task == "binary":
        return binary_scores(output.squeeze(-1), target)
    if task == "multiclass":
        probabilities = torch.softmax(output, dim=-1)
        kwargs = {"num_classes": num_classes, "validate_args": False}
        return {
            "acc": multiclass_accuracy(probabilities, target, average="micro", **kwargs),
            "auroc": multiclass_auroc(probabilities, target, **kwargs),
            "f1": multiclass_f1_score(probabilities, target, average="macro", **kwargs),
        }
    prediction, target = output.squeeze(-1), target.to(output.dtype)
    return {"mse": mean_squared_error(prediction, target), "mae": mean_absolute_error(prediction, target),
            "r2": r2_score(prediction, target)}


class EpochOutputs(Metric):
    """Collects (output, target) batches of one split; `compute` returns the loss and task metrics."""

    full_state_update = False

    def __init__(self, task: str, num_classes: int, target_scale: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.task = task
        self.num_classes = num_classes
        # Regression on standardized targets: (mean, std) turn outputs and targets back into the user's
        # units, so every loss and score is in them.
        self.target_scale = target_scale if task == "regression" else None
        self.add_state("outputs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        self.outputs.append(output.detach())
        self.targets.append(target.detach())

    def compute(self) -> dict[str, torch.Tensor]:
        return epoch_scores(dim_zero_cat(self.outputs), dim_zero_cat(self.targets), self.task, self.num_classes,
                            self.target_scale)


def epoch_scores(output: torch.Tensor, target: torch.Tensor, task: str, num_classes: int,
                 target_scale: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    """A split's loss and task metrics from all of its outputs and targets (in the user's units)."""
    if target_scale is not None:
        mean, std = target_scale
        output, target = output * std + mean, target * std + mean
    return {"loss": task_loss(output, target, task), **task_scores(output, target, task, num_classes)}
