"""What a task decides: the loss on the head's raw output, the prediction, and the metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments import choices


def task_loss(output: torch.Tensor, target: torch.Tensor, task: str, label_smoothing: float = 0.0,
              class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary: BCE with logits (the seed's sigmoid + binary cross-entropy, fused for stability).
    Multiclass: cross-entropy. Regression: mean squared error (the seed's 1/2n Σ(o−y)² without the ½).
    `class_weights` (one per class) make it a weighted mean, as cross-entropy's `weight` does."""
    if task == "binary":
        labels = target
        target = target.to(output.dtype)
        if label_smoothing:
            target = target * (1 - label_smoothing) + 0.5 * label_smoothing
        if class_weights is None:
            return F.binary_cross_entropy_with_logits(output.squeeze(-1), target)
        weights = class_weights.to(output.device, output.dtype)[labels.long()]
        losses = F.binary_cross_entropy_with_logits(output.squeeze(-1), target, reduction="none")
        return (losses * weights).sum() / weights.sum()
    if task == "multiclass":
        weight = None if class_weights is None else class_weights.to(output.device, output.dtype)
        return F.cross_entropy(output, target, weight=weight, label_smoothing=label_smoothing)
    return F.mse_loss(output.squeeze(-1), target.to(output.dtype))


def member_task_losses(output: torch.Tensor, target: torch.Tensor, task: str, label_smoothing: list[float],
                       class_weights: torch.Tensor | None = None) -> torch.Tensor | None:
    """`task_loss` of K members at once: `output` [K, B, out], `target` [K, B] → [K], each member's
    loss computed elementwise as `task_loss` computes it and averaged over its own batch. None where
    that does not hold (class weights, or cross-entropy, whose smoothing is one number a call)."""
    if class_weights is not None or task == "multiclass":
        return None
    if task == "binary":
        target = target.to(output.dtype)
        if any(label_smoothing):
            smoothing = torch.tensor(label_smoothing, device=output.device, dtype=output.dtype).unsqueeze(1)
            target = target * (1 - smoothing) + 0.5 * smoothing  # unchanged where a member's is 0
        losses = F.binary_cross_entropy_with_logits(output.squeeze(-1), target, reduction="none")
    else:
        losses = F.mse_loss(output.squeeze(-1), target.to(output.dtype), reduction="none")
    return losses.mean(dim=1)


def predict(output: torch.Tensor, task: str) -> torch.Tensor:
    """Probabilities for classification (P(class 1) for binary), values for regression."""
    if task == "binary":
        return torch.sigmoid(output.squeeze(-1))
    if task == "multiclass":
        return torch.softmax(output, dim=-1)
    return output.squeeze(-1)


def main_metric(task: str) -> str:
    """The metric a gap is reported for besides the loss (higher is better)."""
    return choices.MAIN_SCORE[task]
