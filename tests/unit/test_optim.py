"""Optimizers and schedulers by `_target_`: any torch.optim class from the command line, the fused kernel
where PyTorch has one, one sentence for a config that cannot build one, and old `name` configs as they ran."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch
from omegaconf import OmegaConf

from experiments.errors import UserError
from experiments.legacy_config import upgraded
from experiments.models.optim import check_scheduler, optimizer_factory, scheduler_config
from experiments.train import train
from experiments.validation import validate_config


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def _preset(compose_cfg, name: str) -> dict:
    return OmegaConf.to_container(compose_cfg([f"optimizer={name}"]).optimizer, resolve=True)


@pytest.mark.parametrize(("name", "expected"), [("adam", True), ("adamw", True), ("sgd", True), ("rmsprop", None)])
def test_auto_uses_the_fused_kernel_where_pytorch_has_one(compose_cfg, name: str, expected: bool | None) -> None:
    optimizer = optimizer_factory(_preset(compose_cfg, name))(_net().parameters())
    assert optimizer.defaults.get("fused") == expected


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_and_default_kernels_train_to_the_same_weights(compose_cfg, name: str) -> None:
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    weights = []
    for fused in (False, True):
        net = _net()
        optimizer = optimizer_factory({**_preset(compose_cfg, name), "lr": 0.01, "fused": fused})(net.parameters())
        for _ in range(20):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(x), y).backward()
            optimizer.step()
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in _net().parameters()]))  # it trained


def test_any_torch_optimizer_trains_from_the_command_line(compose_cfg) -> None:
    seen: list[str] = []
    original = torch.optim.NAdam.step

    def step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(type(self).__name__)
        return original(self, *args, **kwargs)

    torch.optim.NAdam.step = step  # type: ignore[method-assign]
    try:
        with redirect_stdout(io.StringIO()):
            metrics = train(compose_cfg(["optimizer._target_=torch.optim.NAdam", "logger=none", "trainer.max_epochs=2",
                                         "callbacks.learning_curve=null", "data.options.n_samples=200", "test=false"]))
    finally:
        torch.optim.NAdam.step = original  # type: ignore[method-assign]
    assert seen and set(seen) == {"NAdam"} and metrics["train/loss"] > 0  # NAdam has no fused kernel: auto skips it


@pytest.mark.parametrize(("settings", "message"), [
    ({"_target_": "torch.optim.RMSprop", "fused": True}, "optimizer.fused=true: RMSprop has no fused kernel"),
    ({"_target_": "torch.optim.Adamm"}, "optimizer._target_='torch.optim.Adamm' is not a torch.optim optimizer"),
    ({"_target_": "torch.nn.Linear"}, "is not a torch.optim optimizer"),
    ({"_target_": "torch.optim.SGD", "betas": [0.9, 0.99]}, "optimizer.betas is not an argument of torch.optim.SGD"),
])
def test_an_optimizer_that_cannot_be_built_is_one_sentence(settings: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        optimizer_factory({"lr": 0.01, **settings})


def test_a_bad_fused_setting_is_refused_before_torch_is_needed(compose_cfg) -> None:
    with pytest.raises(UserError, match="optimizer.fused must be true, false or auto, got 'maybe'"):
        validate_config(compose_cfg(["optimizer.fused=maybe"]))


def test_scheduler_presets_and_their_mistakes(compose_cfg) -> None:
    optimizer = torch.optim.SGD(_net().parameters(), lr=0.1)
    for name, cls in (("step", "StepLR"), ("cosine", "CosineAnnealingLR"), ("plateau", "ReduceLROnPlateau")):
        settings = OmegaConf.to_container(compose_cfg([f"scheduler={name}"]).scheduler, resolve=True)
        assert type(scheduler_config(settings, optimizer, "val/loss")["scheduler"]).__name__ == cls
    assert scheduler_config(OmegaConf.to_container(compose_cfg([]).scheduler), optimizer, "val/loss") is None
    with pytest.raises(UserError, match="scheduler.gama is not an argument of torch.optim.lr_scheduler.StepLR"):
        check_scheduler({"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 1, "gama": 0.5})


def test_configs_recorded_by_name_build_what_they_built_then() -> None:
    old = OmegaConf.create({"optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": False,
                                          "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8},
                            "scheduler": {"name": "cosine", "min_lr": 0.01, "step_size": 10},
                            "trainer": {"max_epochs": 7}, "monitor_mode": "min", "steps_per_item": "auto",
                            "callbacks": {"last_checkpoint": {
                                "_target_": "experiments.callbacks.model_checkpoint.ModelCheckpoint"}}})
    new = upgraded(old)
    optimizer = optimizer_factory(OmegaConf.to_container(new.optimizer))(_net().parameters())
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    assert not optimizer.defaults["fused"]  # before the option, the default kernel
    scheduler = scheduler_config(OmegaConf.to_container(new.scheduler), optimizer, "val/loss")["scheduler"]
    assert type(scheduler) is torch.optim.lr_scheduler.CosineAnnealingLR and scheduler.T_max == 7
    assert "steps_per_item" not in new
    assert new.callbacks.last_checkpoint._target_ == "lightning.pytorch.callbacks.ModelCheckpoint"
