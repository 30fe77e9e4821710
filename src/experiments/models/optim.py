"""Optimizer and scheduler from their configs: any `torch.optim` class by `_target_` (`_partial_`: the
parameters come later), its keyword arguments checked against the class, one sentence when they do not fit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from experiments.errors import UserError

# Where PyTorch has a one-kernel ("fused") update: one pass over each parameter per step instead of one
# per arithmetic operation.
_FUSED_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
_HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")

def _resolve(target: Any, key: str, base: type) -> type:
    import importlib

    module, _, name = str(target).rpartition(".")
    try:  # not hydra.utils.get_class: it logs the import error before raising it
        cls = getattr(importlib.import_module(module), name, None) if module else None
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        kind = "a torch.optim optimizer" if base is torch.optim.Optimizer else "a torch.optim.lr_scheduler class"
        raise UserError(f"{key}._target_={target!r} is not {kind}; e.g. "
                        f"{'torch.optim.NAdam' if base is torch.optim.Optimizer else 'torch.optim.lr_scheduler.StepLR'}.")
    return cls


def _check_arguments(cls: type, target: str, arguments: Mapping[str, Any], key: str) -> None:
    parameters = list(inspect.signature(cls).parameters)[1:]  # the first: params / optimizer
    unknown = [name for name in arguments if name not in parameters]
    if unknown:
        raise UserError(f"{key}.{unknown[0]} is not an argument of {target}; its arguments are: "
                        f"{', '.join(parameters)}.")


def optimizer_factory(settings: Mapping[str, Any]) -> Callable[[Any], torch.optim.Optimizer]:
    """A function from parameters to the configured optimizer; refuses a config that cannot build one.

    `fused`: true, false or auto (fused where the class and the parameters' device have the kernel).
    """
    arguments = {k: v for k, v in settings.items() if k not in _HYDRA_KEYS}
    fused = arguments.pop("fused", False)
    cls = _resolve(settings.get("_target_"), "optimizer", torch.optim.Optimizer)
    _check_arguments(cls, str(settings["_target_"]), arguments, "optimizer")
    has_fused = "fused" in inspect.signature(cls).parameters
    if fused not in (True, False, "auto"):
        raise UserError(f"optimizer.fused must be true, false or auto, got {fused!r}.")
    if fused is True and not has_fused:
        raise UserError(f"optimizer.fused=true: {cls.__name__} has no fused kernel; use optimizer.fused=auto or false.")
    if "betas" in arguments:
        arguments["betas"] = tuple(arguments["betas"])

    def build(params: Any) -> torch.optim.Optimizer:
        params = list(params)
        return cls(params, **arguments, **fused_option(cls, fused, params))

    return build


def fused_option(cls: type, fused: Any, params: list[torch.Tensor]) -> dict[str, bool]:
    """`{"fused": True}` where `fused` asks for it (true, or auto where the class and the parameters'
    device have the kernel); else nothing (PyTorch's default)."""
    has_fused = "fused" in inspect.signature(cls).parameters
    use_fused = fused is True or (fused == "auto" and has_fused and all(
        p.device.type in _FUSED_DEVICE_TYPES and p.is_floating_point() for p in params))
    return {"fused": True} if use_fused else {}


def optimizer_class(target: Any) -> type:
    """The `torch.optim` class `optimizer._target_` names (one sentence when it names none)."""
    return _resolve(target, "optimizer", torch.optim.Optimizer)


def optimizer_arguments(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of an optimizer config (Hydra's keys left out, betas as a tuple)."""
    arguments = {k: v for k, v in settings.items() if k not in _HYDRA_KEYS}
    if "betas" in arguments:
        arguments["betas"] = tuple(arguments["betas"])
    return arguments


def check_scheduler(settings: Mapping[str, Any] | None) -> None:
    """Refuse a scheduler config that cannot build one, before any run is recorded."""
    settings = settings or {}
    if settings.get("_target_"):
        cls = _resolve(settings["_target_"], "scheduler", torch.optim.lr_scheduler.LRScheduler)
        arguments = {k: v for k, v in settings.items() if k not in _HYDRA_KEYS}
        _check_arguments(cls, str(settings["_target_"]), arguments, "scheduler")


def scheduler_config(settings: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer,
                     monitor: str) -> dict[str, Any] | None:
    """Lightning's lr_scheduler dict (stepped once per epoch, a plateau scheduler watching `monitor`), or
    None when no scheduler is configured."""
    settings = settings or {}
    if not settings.get("_target_"):
        return None
    check_scheduler(settings)
    cls = _resolve(settings["_target_"], "scheduler", torch.optim.lr_scheduler.LRScheduler)
    arguments = {k: v for k, v in settings.items() if k not in _HYDRA_KEYS}
    return {"scheduler": cls(optimizer, **arguments), "interval": "epoch", "monitor": monitor}
