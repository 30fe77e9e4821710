"""Each task's head, loss, prediction and metrics."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.models.epoch_metrics import EpochOutputs, binary_scores
from experiments.models.tasks import member_task_losses, predict, task_loss


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


def _reference(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """The same scores from torchmetrics' class metrics, fed the way a Lightning module feeds them."""
    from torchmetrics import MeanAbsoluteError, MeanSquaredError, R2Score
    from torchmetrics.classification import AUROC, Accuracy, F1Score

    if task == "regression":
        metrics = {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}
        preds = outputs.squeeze(-1)
    elif task == "binary":
        metrics = {"acc": Accuracy(task="binary"), "auroc": AUROC(task="binary"), "f1": F1Score(task="binary")}
        preds = torch.sigmoid(outputs.squeeze(-1))
    else:
        kwargs = {"task": "multiclass", "num_classes": 3}
        metrics = {"acc": Accuracy(**kwargs), "auroc": AUROC(**kwargs), "f1": F1Score(average="macro", **kwargs)}
        preds = torch.softmax(outputs, dim=-1)
    scores = {}
    for name, metric in metrics.items():
        for chunk_preds, chunk_targets in zip(preds.split(7), targets.split(7)):
            metric.update(chunk_preds, chunk_targets)
        scores[name] = float(metric.compute())
    scores["loss"] = float(task_loss(outputs, targets, task))
    return scores


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_epoch_scores_match_torchmetrics_whatever_the_batching(task: str) -> None:
    generator = torch.Generator().manual_seed(3)
    width = 3 if task == "multiclass" else 1
    outputs = torch.randn(50, width, generator=generator) * 2
    if task == "regression":
        targets = outputs.squeeze(-1) + torch.randn(50, generator=generator)
    else:
        targets = torch.randint(0, max(width, 2), (50,), generator=generator)
    collected = EpochOutputs(task, 3)
    for chunk_outputs, chunk_targets in zip(outputs.split(16), targets.split(16)):
        collected.update(chunk_outputs, chunk_targets)
    scores = {name: float(value) for name, value in collected.compute().items()}
    assert scores == pytest.approx(_reference(task, outputs, targets), rel=1e-5, abs=1e-6)


def test_binary_f1_is_zero_when_no_positive_is_predicted_or_present() -> None:
    scores = binary_scores(torch.full((4,), -3.0), torch.zeros(4, dtype=torch.long))
    assert float(scores["f1"]) == 0.0 and float(scores["acc"]) == 1.0


def test_class_weights_make_the_loss_a_weighted_mean_over_samples() -> None:
    logits, target = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([1, 0, 0])
    weights = torch.tensor([1.0, 4.0])
    each = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), target.float(), reduction="none")
    expected = (each * torch.tensor([4.0, 1.0, 1.0])).sum() / 6.0
    assert torch.allclose(task_loss(logits, target, "binary", class_weights=weights), expected)
    assert not torch.allclose(task_loss(logits, target, "binary"), expected)
    scores = torch.randn(5, 3)
    classes = torch.tensor([0, 1, 2, 2, 1])
    three = torch.tensor([1.0, 2.0, 0.5])
    assert torch.allclose(task_loss(scores, classes, "multiclass", class_weights=three),
                          torch.nn.functional.cross_entropy(scores, classes, weight=three))


@pytest.mark.parametrize(("dataset", "task"), [("seed_random", "binary"), ("iris", "multiclass"),
                                               ("diabetes", "regression")])
def test_every_monitor_the_config_check_allows_is_published_by_training(compose_cfg, dataset: str,
                                                                          task: str) -> None:
    # `monitor` is checked against choices.monitorable_metrics before a run is recorded; a name listed
    # there but never published would pass the check and then fail in Lightning mid-run.
    from experiments import choices
    from experiments.train import train

    metrics = train(compose_cfg([f"data={dataset}", "trainer.max_epochs=1", "logger=none", "test=false"]))
    assert set(choices.monitorable_metrics(task)) <= set(metrics)
    assert {name.split("/")[1] for name in metrics if name.startswith("val/")} >= set(choices.TASK_SCORES[task])


def test_the_model_options_the_config_check_allows_are_the_builders_keywords() -> None:
    import inspect

    from experiments import choices
    from experiments.models.mlp import build_mlp

    keywords = list(inspect.signature(build_mlp).parameters)[2:]  # after input_dim and output_dim
    assert set(choices.MODEL_KEYS) == {"_target_", "_partial_", "input_dim", *keywords}


def test_members_losses_at_once_are_each_members_own_loss() -> None:
    """A population's K losses in one call equal `task_loss` per member (the loss a run alone computes),
    with each member's own label smoothing; where that cannot hold, it declines (None)."""
    generator = torch.Generator().manual_seed(0)
    output = torch.randn(3, 32, 1, generator=generator)
    labels = torch.randint(0, 2, (3, 32), generator=generator)
    smoothing = [0.0, 0.1, 0.0]
    together = member_task_losses(output, labels, "binary", smoothing)
    assert together is not None
    for m in range(3):
        assert torch.equal(together[m], task_loss(output[m], labels[m], "binary", smoothing[m]))
    values = torch.randn(3, 32, generator=generator)
    together = member_task_losses(output, values, "regression", [0.0] * 3)
    assert together is not None
    for m in range(3):
        assert torch.equal(together[m], task_loss(output[m], values[m], "regression"))
    assert member_task_losses(torch.randn(3, 32, 4), labels, "multiclass", [0.0] * 3) is None
    assert member_task_losses(output, labels, "binary", [0.0] * 3, torch.tensor([1.0, 2.0])) is None
