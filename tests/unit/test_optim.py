"""The fused optimizer kernel: chosen by `auto` where PyTorch has one, the same updates as the default
implementation, refused in one sentence where it does not exist."""

from __future__ import annotations

import pytest
import torch

from experiments.errors import UserError
from experiments.models.optim import build_optimizer
from experiments.validation import validate_config


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


@pytest.mark.parametrize(("name", "expected"), [("adam", True), ("adamw", True), ("sgd", True), ("rmsprop", None)])
def test_auto_uses_the_fused_kernel_where_pytorch_has_one(name: str, expected: bool | None) -> None:
    optimizer = build_optimizer(_net().parameters(), name=name, lr=0.01, fused="auto")
    assert optimizer.defaults.get("fused") == expected


def test_runs_recorded_before_the_option_existed_keep_the_default_implementation() -> None:
    assert not build_optimizer(_net().parameters(), name="adam", lr=0.01).defaults["fused"]


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_and_default_kernels_train_to_the_same_weights(name: str) -> None:
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    weights = []
    for fused in (False, True):
        net = _net()
        optimizer = build_optimizer(net.parameters(), name=name, lr=0.01, momentum=0.9, weight_decay=0.01,
                                    fused=fused)
        for _ in range(20):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(x), y).backward()
            optimizer.step()
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in _net().parameters()]))  # it trained


@pytest.mark.parametrize(("overrides", "message"), [
    (["optimizer.fused=maybe"], "optimizer.fused must be true, false or auto, got 'maybe'"),
    (["optimizer=rmsprop", "optimizer.fused=true"], "optimizer.fused=true is available for sgd, adam, adamw, not rmsprop"),
])
def test_a_bad_fused_setting_is_refused_in_one_sentence(compose_cfg, overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate_config(compose_cfg(overrides))
