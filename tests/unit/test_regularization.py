"""Each regularizer does exactly what the docs say, on networks small enough to check by hand."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.data.datamodule import TabularDataModule
from experiments.models.mlp import build_mlp
from experiments.models.module import ExperimentModule
from experiments.models.regularization import apply_max_norm, weight_penalty


def tiny_net() -> nn.Sequential:
    """2→2→1 with hand-set weights: Σ|w| = 9.5 and Σw² = 19.25 over the weights; big biases that
    would change both sums if they were (wrongly) penalized."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[0].bias.copy_(torch.tensor([10.0, -10.0]))
        net[2].weight.copy_(torch.tensor([[-1.0, 2.0]]))
        net[2].bias.copy_(torch.tensor([100.0]))
    return net


FROZEN = {"_target_": "torch.optim.SGD", "lr": 0.0}  # the weights stay as set by hand, so every step sees the same loss
X = torch.tensor([[0.5, -1.0], [2.0, 1.0], [-1.0, 0.0]])
Y = torch.tensor([1, 0, 1])


def fit_one_epoch(net: nn.Module, tmp_path, optimizer: dict | None = None, **regularization: float) -> dict[str, float]:
    """One real Lightning epoch over the 3-row batch; the metrics ExperimentModule logged."""
    module = ExperimentModule(net, task="binary", num_classes=2, optimizer=optimizer or FROZEN,
                              regularization=regularization)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    loader = DataLoader(TensorDataset(X, Y), batch_size=3)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=[loader, loader])
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.parametrize(("l1", "l2", "expected"), [(0.1, 0.0, 0.95), (0.0, 0.01, 0.1925), (0.1, 0.01, 1.1425)])
def test_penalty_is_l1_sum_abs_plus_l2_sum_squares_of_weights_only(l1: float, l2: float, expected: float) -> None:
    penalty = weight_penalty(tiny_net(), l1, l2)
    assert penalty is not None
    assert penalty.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("l1", "l2", "expected"), [(0.1, 0.0, 0.95), (0.0, 0.01, 0.1925), (0.1, 0.01, 1.1425)])
def test_training_objective_grows_by_exactly_the_penalty(tmp_path, l1: float, l2: float, expected: float) -> None:
    plain = fit_one_epoch(tiny_net(), tmp_path)
    penalized = fit_one_epoch(tiny_net(), tmp_path, l1=l1, l2=l2)
    assert penalized["train/objective"] - plain["train/objective"] == pytest.approx(expected, abs=1e-5)
    # The penalty is an optimization term only: the reported losses are the task loss alone.
    assert penalized["train/loss"] == pytest.approx(plain["train/loss"], abs=1e-6)
    assert penalized["val/loss"] == pytest.approx(plain["val/loss"], abs=1e-6)


def test_no_penalty_when_both_coefficients_are_zero() -> None:
    assert weight_penalty(tiny_net(), 0.0, 0.0) is None


def test_penalty_gradient_reaches_weights_but_not_biases() -> None:
    net = tiny_net()
    penalty = weight_penalty(net, 0.1, 0.01)
    assert penalty is not None
    penalty.backward()
    # d/dw (0.1|w| + 0.01 w²) = 0.1 sign(w) + 0.02 w
    expected = 0.1 * torch.sign(net[0].weight) + 0.02 * net[0].weight
    torch.testing.assert_close(net[0].weight.grad, expected.detach())
    assert net[0].bias.grad is None and net[2].bias.grad is None


def test_norm_layer_parameters_are_not_penalized() -> None:
    net = build_mlp(2, 1, hidden_dims=[3], norm="batch")
    with torch.no_grad():
        net[1].weight.fill_(50.0)  # the BatchNorm scale; penalizing it would dominate the sum
    expected = sum(m.weight.pow(2).sum() for m in net.modules() if isinstance(m, nn.Linear)).item()
    assert weight_penalty(net, 0.0, 1.0).item() == pytest.approx(expected)


def test_label_smoothing_pulls_binary_targets_towards_one_half_in_training_only(tmp_path) -> None:
    metrics = fit_one_epoch(tiny_net(), tmp_path, label_smoothing=0.2)
    logits = tiny_net()(X).squeeze(-1).detach()
    smoothed = F.binary_cross_entropy_with_logits(logits, torch.tensor([0.9, 0.1, 0.9])).item()
    hard = F.binary_cross_entropy_with_logits(logits, Y.float()).item()
    assert metrics["train/objective"] == pytest.approx(smoothed, abs=1e-5)
    assert metrics["train/loss"] == pytest.approx(hard, abs=1e-5)  # measured against the true labels


def test_max_norm_clips_each_units_incoming_weights_and_leaves_small_ones() -> None:
    net = tiny_net()  # unit norms: first layer √5 ≈ 2.24 and √9.25 ≈ 3.04; head √5
    apply_max_norm(net, 2.5)
    norms = net[0].weight.norm(dim=1)
    torch.testing.assert_close(norms[0], torch.tensor(5.0).sqrt())  # under the limit: untouched
    assert norms[1].item() == pytest.approx(2.5, rel=1e-4)
    assert net[0].bias.tolist() == [10.0, -10.0]


def test_input_noise_changes_the_training_objective_but_not_the_evaluation(tmp_path) -> None:
    torch.manual_seed(0)
    noisy = fit_one_epoch(tiny_net(), tmp_path, input_noise=1.0)
    clean = fit_one_epoch(tiny_net(), tmp_path)
    assert noisy["train/objective"] != pytest.approx(clean["train/objective"], abs=1e-3)
    assert noisy["val/loss"] == pytest.approx(clean["val/loss"], abs=1e-7)
    assert noisy["train/loss"] == pytest.approx(clean["train/loss"], abs=1e-7)


def test_dropout_is_off_in_eval_mode() -> None:
    torch.manual_seed(0)
    with_dropout = build_mlp(4, 1, hidden_dims=[64, 64], dropout=0.5)
    without = build_mlp(4, 1, hidden_dims=[64, 64], dropout=0.0)
    linear = [m for m in with_dropout if isinstance(m, nn.Linear)]
    for target, source in zip([m for m in without if isinstance(m, nn.Linear)], linear):
        target.load_state_dict(source.state_dict())
    x = torch.randn(16, 4)
    with_dropout.train()
    assert not torch.allclose(with_dropout(x), without(x))
    with_dropout.eval()
    torch.testing.assert_close(with_dropout(x), without(x))


def test_logged_training_metrics_come_from_an_eval_pass_without_dropout_or_noise(tmp_path) -> None:
    """`train/loss` is what the final weights score on the training split in eval mode, so strong dropout
    and input noise cannot fake a generalization gap."""
    pl.seed_everything(0, verbose=False)
    data = TabularDataModule("make_classification", {"n_samples": 120, "n_features": 6}, split={"train": 0.5, "val": 0.5, "test": 0.0})
    net = build_mlp(data.input_dim, 1, hidden_dims=[32], dropout=0.8)
    module = ExperimentModule(net, task="binary", num_classes=2, optimizer={"_target_": "torch.optim.Adam", "lr": 1e-2},
                              regularization={"input_noise": 3.0})
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    x, y = data.tensors("train").tensors
    net.eval()
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(net(x).squeeze(-1), y.float()).item()
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(expected, rel=1e-5)
