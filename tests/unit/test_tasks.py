"""Each task's head, loss, prediction and metrics."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.models.tasks import Predictor, build_metrics, predict, task_loss


def test_binary_loss_is_bce_on_sigmoid_of_the_logit() -> None:
    logits = torch.tensor([[0.0], [2.0]])
    targets = torch.tensor([1, 0])
    expected = -(math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2.0)))) / 2
    assert task_loss(logits, targets, "binary").item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(predict(logits, "binary"), torch.sigmoid(logits.squeeze(-1)))


def test_multiclass_loss_is_cross_entropy_and_predicts_probabilities() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    expected = -math.log(math.exp(1.0) / sum(math.exp(v) for v in (1.0, 2.0, 3.0)))
    assert task_loss(logits, torch.tensor([0]), "multiclass").item() == pytest.approx(expected, rel=1e-6)
    assert predict(logits, "multiclass").sum().item() == pytest.approx(1.0)


def test_regression_loss_is_mean_squared_error() -> None:
    out = torch.tensor([[1.0], [3.0]])
    assert task_loss(out, torch.tensor([0.0, 1.0]), "regression").item() == pytest.approx((1 + 4) / 2)


def test_label_smoothing_moves_binary_targets_toward_one_half() -> None:
    logits = torch.tensor([[0.3]])
    smoothed = task_loss(logits, torch.tensor([1]), "binary", label_smoothing=0.2)
    manual = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([0.3]), torch.tensor([0.9]))
    assert smoothed.item() == pytest.approx(manual.item())


@pytest.mark.parametrize(
    ("task", "keys"),
    [("binary", {"acc", "auroc", "f1"}), ("multiclass", {"acc", "auroc", "f1"}), ("regression", {"mse", "mae", "r2"})],
)
def test_metric_sets_per_task(task: str, keys: set[str]) -> None:
    assert set(build_metrics(task, 3).keys()) == keys


def test_predictor_wraps_net_with_the_task_transform() -> None:
    net = torch.nn.Linear(2, 1)
    x = torch.randn(4, 2)
    assert torch.allclose(Predictor(net, "binary")(x), torch.sigmoid(net(x)).squeeze(-1))
