"""A population's evaluation outputs of one split, gathered during the pass and scored for every member
at its end, each member's values those its run alone computes (`epoch_metrics.epoch_scores`).

Scoring K members one `EpochOutputs` at a time costs the per-call machinery K times per split and
epoch (see docs/performance.md). A binary task is scored for all members in one go: the loss, accuracy
and F1 as the run alone counts them, and AUROC from average ranks (the Mann–Whitney form of the area
under the ROC curve, equal to torchmetrics' trapezoid over the exact curve, ties counted half). Other
tasks, a split with a single class and a member whose outputs are not all finite are scored member by
member with the run alone's own function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from experiments.models.epoch_metrics import epoch_scores


class PopulationOutputs:
    """`update(output [K, B, out], target [B])` per batch; `compute()` → one dict of values per member."""

    def __init__(self, task: str, num_classes: int, target_scale: tuple[float, float] | None = None) -> None:
        self.task = task
        self.num_classes = num_classes
        self.target_scale = target_scale if task == "regression" else None
        self._outputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    @property
    def update_count(self) -> int:
        return len(self._outputs)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        self._outputs.append(output.detach())
        self._targets.append(target.detach())

    def reset(self) -> None:
        self._outputs, self._targets = [], []

    def compute(self, members: Sequence[int]) -> list[dict[str, float]]:
        """The values of each of `members` (indices into the population), in that order."""
        output, target = torch.cat(self._outputs, dim=1)[list(members)], torch.cat(self._targets)
        rows = range(output.shape[0])
        if self.task != "binary":
            return [_floats(epoch_scores(output[r], target, self.task, self.num_classes, self.target_scale))
                    for r in rows]
        logits = output.squeeze(-1)
        scores = binary_population_scores(logits, target)
        values = {name: column.tolist() for name, column in scores.items()}
        finite = torch.isfinite(logits).all(dim=1).tolist()
        return [{name: column[r] for name, column in values.items()} if finite[r]
                else _floats(epoch_scores(output[r], target, self.task, self.num_classes)) for r in rows]


def binary_population_scores(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss, acc, AUROC and F1 of each row of `logits` [K, N] against `target` [N] (see the module)."""
    size = logits.shape[1]
    labels = target.to(logits.dtype).expand_as(logits)
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=1)
    probability = torch.sigmoid(logits)
    predicted, actual = probability >= 0.5, target.bool()
    true_positive = (predicted & actual).sum(dim=1)
    wrong = (predicted != actual).sum(dim=1)
    denominator = 2 * true_positive + wrong
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), 0.0)
    return {"loss": loss, "acc": 1 - wrong / max(size, 1), "auroc": _auroc_by_ranks(probability, actual), "f1": f1}


def _auroc_by_ranks(probability: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Each row's AUROC: (sum of the positives' average ranks − P(P+1)/2) / (P·N), in float64."""
    positives = int(actual.sum())
    negatives = actual.numel() - positives
    if positives == 0 or negatives == 0:  # undefined; torchmetrics' own answer (and warning) per member
        from torchmetrics.functional.classification import binary_auroc

        return torch.stack([binary_auroc(row, actual.long(), validate_args=False) for row in probability])
    ordered, order = probability.sort(dim=1)
    # A value's tied block spans [first, last) in its sorted row: its average rank (1-based) is the middle.
    first = torch.searchsorted(ordered, ordered, right=False)
    last = torch.searchsorted(ordered, ordered, right=True)
    ranks = (first + last + 1).to(torch.float64) / 2
    rank_sum = (ranks * actual[order]).sum(dim=1)
    area = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return area.to(probability.dtype)


def _floats(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in scores.items()}
