"""Optimizers and schedulers by name, with only the arguments each one takes."""

from __future__ import annotations

from typing import Any

import torch

from experiments import choices

# Optimizers with a fused kernel: one pass over each parameter per step instead of one per arithmetic
# operation. On CPU, Adam's step for the 1024-wide `large` benchmark net took ~5.5 ms in PyTorch's default
# implementation and ~0.5 ms fused (2 threads), ~7 % of its training step.
_FUSED_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def build_optimizer(params: Any, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
                    nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    fused: bool | str = False) -> torch.optim.Optimizer:
    """`fused`: true, false or `auto` (fused where this optimizer and the parameters' device have the
    kernel). The default False is what runs recorded before the option existed used, so they rerun alike."""
    assert name in choices.OPTIMIZERS, name
    params = list(params)
    if fused == "auto":
        fused = name in choices.FUSED_OPTIMIZERS and all(
            p.device.type in _FUSED_DEVICE_TYPES and p.is_floating_point() for p in params
        )
    extra = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, **extra)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **extra)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **extra)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, eps=eps, weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, mode: str, max_epochs: int,
                    step_size: int = 10, gamma: float = 0.1, patience: int = 5, factor: float = 0.1,
                    min_lr: float = 0.0) -> dict[str, Any] | None:
    """Lightning's lr_scheduler dict, stepped once per epoch; None when no scheduler is configured."""
    assert name in choices.SCHEDULERS, name
    if name == "none":
        return None
    if name == "step":
        scheduler: Any = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    elif name == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs), eta_min=min_lr)
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, patience=patience, factor=factor, min_lr=min_lr
        )
    return {"scheduler": scheduler, "interval": "epoch"}
