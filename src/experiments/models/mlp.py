"""Build the MLP (an `nn.Sequential`) from plain config values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from experiments import choices
from experiments.errors import UserError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}
assert tuple(ACTIVATIONS) == choices.ACTIVATIONS

_INITS: dict[str, Callable[[torch.Tensor, float], object]] = {
    "xavier_uniform": lambda w, _: nn.init.xavier_uniform_(w),
    "xavier_normal": lambda w, _: nn.init.xavier_normal_(w),
    "kaiming_uniform": lambda w, _: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w, _: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "normal": lambda w, std: nn.init.normal_(w, 0.0, std),
}
assert set(_INITS) | {"default"} == set(choices.INITS)


def _norm_layer(kind: str, width: int) -> nn.Module | None:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return None


def build_mlp(
    input_dim: int,
    output_dim: int,
    hidden_dims: Sequence[int] = (10, 8),
    activation: str = "relu",
    dropout: float = 0.0,
    norm: str = "none",
    init: str = "default",
    init_std: float = 0.02,
    bias_init: float | None = None,
) -> nn.Sequential:
    """Linear → [norm] → activation → [dropout] per hidden layer, then a linear head.

    The head emits raw logits/values; sigmoid/softmax live in the loss and in `predict`, which is
    numerically safer than a sigmoid output layer (the seed's Keras model) and gives the same predictions.
    An empty `hidden_dims` is a linear (logistic) model.
    """
    if activation not in ACTIVATIONS:
        raise UserError(f"model.activation={activation!r} is not known; choose one of: {', '.join(ACTIVATIONS)}.")
    layers: list[nn.Module] = []
    width_in = input_dim
    for width in hidden_dims:
        layers.append(nn.Linear(width_in, width))
        norm_layer = _norm_layer(norm, width)
        if norm_layer is not None:
            layers.append(norm_layer)
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, output_dim))
    model = nn.Sequential(*layers)
    _initialize(model, init, init_std, bias_init)
    return model


def _initialize(model: nn.Module, init: str, std: float, bias_init: float | None) -> None:
    for layer in model.modules():
        if not isinstance(layer, nn.Linear):
            continue
        if init != "default":
            _INITS[init](layer.weight, std)
        if bias_init is not None:
            nn.init.constant_(layer.bias, bias_init)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def network_from_config(model: Any, input_dim: int, output_dim: int) -> nn.Module:
    """The network a `model` config names: its `_target_` (a partial builder, `build_mlp` in every
    preset) called with the data's width and the task's number of outputs."""
    from omegaconf import OmegaConf

    from experiments.errors import instantiated

    options = OmegaConf.to_container(model, resolve=True) if OmegaConf.is_config(model) else dict(model)
    assert isinstance(options, dict)
    options.pop("input_dim", None)  # taken from the data (train checks that a given one agrees)
    options.setdefault("_target_", "experiments.models.mlp.build_mlp")  # configs recorded before `_target_`
    options["_partial_"] = True
    return instantiated(options)(input_dim, output_dim)
