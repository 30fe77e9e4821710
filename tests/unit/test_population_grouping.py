"""Which sweep jobs train together: the population key, on the real composed configs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from experiments.models.mlp import build_mlp
from experiments.models.population_net import PopulationNet, generator_like_global
from experiments.population_grouping import adam_has_decoupled_groups, population_key
from experiments.sizing import member_memory_bytes

Compose = Callable[..., DictConfig]


@pytest.mark.parametrize("member", [
    ["seed=7"], ["optimizer.lr=0.1", "optimizer.betas=[0.8,0.9]"], ["optimizer.weight_decay=0.1"],
    ["regularization.l2=0.01", "regularization.input_noise=0.2"], ["model.dropout=0.5"],
    ["callbacks.early_stopping.patience=3"], ["callbacks.loss_threshold.threshold=0.2"], ["+tags.fix=l2"],
    ["data.shuffle_seed=9"],
    # AdamW is Adam with its weight decay decoupled, a per-group option of Adam from torch 2.7
    pytest.param(["optimizer=adamw"], marks=pytest.mark.skipif(
        not adam_has_decoupled_groups(), reason="this torch's Adam has no per-group decoupled weight decay")),
])
def test_what_a_member_may_change_keeps_it_in_the_population(compose_cfg: Compose, member: list[str]) -> None:
    assert population_key(compose_cfg()) is not None
    assert population_key(compose_cfg(member)) == population_key(compose_cfg())


@pytest.mark.parametrize("other", [
    ["model.hidden_dims=[16]"], ["model.activation=tanh"], ["model.norm=batch"], ["data.batch_size=64"],
    ["trainer.max_epochs=3"], ["optimizer=sgd"], ["data=iris"], ["monitor=val/acc", "monitor_mode=max"],
    ["scheduler=step"], ["optimizer.fused=false"],
])
def test_a_different_shape_or_schedule_is_another_population(compose_cfg: Compose, other: list[str]) -> None:
    assert population_key(compose_cfg(other)) not in (None, population_key(compose_cfg()))


@pytest.mark.parametrize("alone", [
    ["trainer.gradient_clip_val=1.0"],  # one norm over every member's gradients
    ["+trainer.accumulate_grad_batches=2"], ["scheduler=plateau"], ["skip_finished=true"],
    ["model._target_=tests.unit.test_population_grouping.two_layers"],
    ["+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor"],
    ["experiment=overfitting/swa", "callbacks.early_stopping.patience=3"],  # averaging past a member's stop
    ["callbacks.model_checkpoint=null"],  # a run alone would then test its last epoch, not its best
    ["log_checkpoints=best"], ["trainer.devices=2"],
    # An update that is not per weight would mix the members whose weights share a stacked tensor.
    ["optimizer._target_=torch.optim.Adafactor"], ["optimizer._target_=torch.optim.LBFGS"],
    ["trainer.precision=16-mixed"],  # its loss scaler skips every member's step for one member's NaN
])
def test_what_a_population_cannot_reproduce_trains_alone(compose_cfg: Compose, alone: list[str]) -> None:
    assert population_key(compose_cfg(alone)) is None


def two_layers(input_dim: int, output_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(input_dim, 4), nn.ReLU(), nn.Linear(4, output_dim))


def test_the_batched_forward_is_each_members_own() -> None:
    members, generators = [], []
    for seed, dropout in ((1, 0.0), (2, 0.3)):
        torch.manual_seed(seed)
        members.append(build_mlp(5, 1, [6, 4], norm="layer", dropout=dropout))
        generators.append(generator_like_global())
    net = PopulationNet(members, [0.0, 0.3], [0.0, 0.0], generators, [1, 2])
    x = torch.randn(7, 5)
    net.eval()
    together = net(x)
    for m, member in enumerate(members):
        member.eval()
        torch.testing.assert_close(together[m], member(x), rtol=1e-6, atol=1e-6)
    # Training: the member with dropout draws its mask from its own generator, as it would alone.
    net.train()
    batches = torch.randn(2, 7, 5)
    together = net(batches)
    torch.manual_seed(2)
    alone = build_mlp(5, 1, [6, 4], norm="layer", dropout=0.3)
    alone.load_state_dict(members[1].state_dict())
    alone.train()
    torch.testing.assert_close(together[1], alone(batches[1]), rtol=1e-6, atol=1e-6)


def test_a_members_memory_grows_with_its_network_and_batch() -> None:
    sizes = {"train": 700, "val": 150, "test": 150}
    small = member_memory_bytes(187, 8, [10, 8], 32, sizes)
    assert member_memory_bytes(50_000, 8, [200, 200], 32, sizes) > small
    assert member_memory_bytes(187, 8, [10, 8], 512, sizes) > small
    assert small > 4 * 6 * 187  # at least weights, gradients and optimizer states


def test_a_stopped_member_stays_as_it_stopped_while_the_others_train() -> None:
    from experiments.models.population_module import MemberSettings, PopulationModule

    members, generators = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(build_mlp(5, 1, [6]))
        generators.append(generator_like_global())
    net = PopulationNet(members, [0.0, 0.0], [0.0, 0.0], generators, [1, 2])
    module = PopulationModule(net, [MemberSettings({"lr": 0.1}), MemberSettings({"lr": 0.1})], "binary", 2,
                              "torch.optim.Adam", False, None)
    optimizer = module.configure_optimizers()  # one group: both members' layers as stacked tensors
    x, y = torch.randn(2, 8, 5), torch.randint(0, 2, (2, 8))

    def step() -> None:  # Lightning's order of calls in an automatic-optimization step
        optimizer.zero_grad()
        module.training_step((x, y), 0).backward()
        module.on_before_optimizer_step(optimizer)
        optimizer.step()
        module.on_train_batch_end(None, (x, y), 0)

    def weights(m: int) -> list[torch.Tensor]:
        return list(net.member_state(m).values())

    step()  # both train: Adam now has momentum for both
    module.states[0].stopped_epoch = 0  # member 0 stops (early stopping)
    frozen, moving = weights(0), weights(1)
    step()
    step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, weights(0)))
    assert not all(torch.equal(a, b) for a, b in zip(moving, weights(1)))
    net.export_members()  # what is logged: the member's own network, as it stopped
    assert all(torch.equal(a, b) for a, b in zip(frozen, members[0].state_dict().values()))
