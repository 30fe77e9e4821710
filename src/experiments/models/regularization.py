"""Weight penalties and constraints. Only `nn.Linear` weights are penalized: biases and norm-layer
parameters are left alone, as in Keras' kernel_regularizer and most textbooks."""

from __future__ import annotations

import torch
from torch import nn


def linear_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]


def weight_penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | None:
    """`l1 * Σ|w| + l2 * Σ w²` over Linear weights (Keras' l1/l2 convention); None when both are 0.

    This is an explicit loss term, unlike AdamW's decoupled `weight_decay`, which shrinks weights
    in the update step and never shows in the loss.
    """
    if l1 == 0 and l2 == 0:
        return None
    weights = linear_weights(model)
    penalty = torch.zeros((), device=weights[0].device)
    if l1:
        penalty = penalty + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        penalty = penalty + l2 * sum(w.pow(2).sum() for w in weights)
    return penalty


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Clip each unit's incoming weight vector to L2 norm <= max_norm (Keras' MaxNorm), after a step."""
    for weight in linear_weights(model):
        weight.renorm_(p=2, dim=0, maxnorm=max_norm)


def add_input_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    return x + std * torch.randn_like(x) if std > 0 else x
