"""The MLP builder: shapes, parameter counts, activations, inits, norms, dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from experiments import choices
from experiments.errors import UserError
from experiments.models.mlp import ACTIVATIONS, build_mlp, count_parameters


@pytest.mark.parametrize(
    ("input_dim", "output_dim", "hidden", "expected_params"),
    [
        (8, 1, [10, 8], 8 * 10 + 10 + 10 * 8 + 8 + 8 * 1 + 1),  # the seed network: 185
        (8, 1, [], 9),  # logistic regression
        (4, 3, [16], 4 * 16 + 16 + 16 * 3 + 3),
        (30, 10, [64, 32, 16], 30 * 64 + 64 + 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10),
    ],
)
def test_shapes_and_parameter_counts(input_dim: int, output_dim: int, hidden: list[int], expected_params: int) -> None:
    model = build_mlp(input_dim, output_dim, hidden)
    assert count_parameters(model) == expected_params
    assert model(torch.randn(5, input_dim)).shape == (5, output_dim)


@pytest.mark.parametrize("activation", choices.ACTIVATIONS)
def test_each_activation_is_placed_after_every_hidden_layer(activation: str) -> None:
    model = build_mlp(3, 1, [4, 4], activation=activation)
    kinds = [type(m) for m in model]
    assert kinds.count(type(ACTIVATIONS[activation]())) == 2
    assert model(torch.randn(2, 3)).shape == (2, 1)


def test_unknown_activation_lists_the_valid_names() -> None:
    with pytest.raises(UserError, match="choose one of: relu, tanh"):
        build_mlp(3, 1, [4], activation="swish2")


@pytest.mark.parametrize("init", choices.INITS)
def test_each_init_scheme_builds_and_changes_weights_deterministically(init: str) -> None:
    torch.manual_seed(0)
    a = build_mlp(20, 1, [50], init=init, init_std=0.5)
    torch.manual_seed(0)
    b = build_mlp(20, 1, [50], init=init, init_std=0.5)
    assert torch.equal(a[0].weight, b[0].weight)
    if init == "normal":
        assert abs(a[0].weight.std().item() - 0.5) < 0.05


def test_bias_init_sets_every_bias() -> None:
    model = build_mlp(3, 2, [4, 5], bias_init=0.25)
    for layer in model:
        if isinstance(layer, nn.Linear):
            assert torch.all(layer.bias == 0.25)


def test_norm_and_dropout_layers_per_hidden_layer() -> None:
    model = build_mlp(3, 1, [4, 5], norm="batch", dropout=0.3)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model) == 2
    assert sum(isinstance(m, nn.Dropout) for m in model) == 2
    layer_model = build_mlp(3, 1, [4], norm="layer")
    assert any(isinstance(m, nn.LayerNorm) for m in layer_model)
