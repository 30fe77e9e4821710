"""Configs recorded by earlier versions, in today's form, so old runs reproduce, resume and evaluate.

Before optimizers and schedulers were named by `_target_`, they were named by `name` (adam, sgd, …;
none, step, cosine, plateau), with the epoch budget and monitor mode filled in when built; checkpoints
were written by a subclass of Lightning's `ModelCheckpoint` that is gone; the network was always the MLP,
with no `model._target_`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

_OPTIMIZERS = {"sgd": ("torch.optim.SGD", ("lr", "momentum", "nesterov", "weight_decay")),
               "adam": ("torch.optim.Adam", ("lr", "betas", "eps", "weight_decay")),
               "adamw": ("torch.optim.AdamW", ("lr", "betas", "eps", "weight_decay")),
               "rmsprop": ("torch.optim.RMSprop", ("lr", "momentum", "eps", "weight_decay"))}


_RETIRED_CALLBACKS = {"experiments.callbacks.model_checkpoint.ModelCheckpoint": "lightning.pytorch.callbacks.ModelCheckpoint"}


def _optimizer(old: dict[str, Any]) -> dict[str, Any]:
    target, keys = _OPTIMIZERS[old["name"]]
    new = {"_target_": target, "_partial_": True, **{k: old[k] for k in keys if k in old}}
    if old["name"] != "rmsprop":
        new["fused"] = old.get("fused", False)  # before the option, the default kernel
    return new


def _scheduler(old: dict[str, Any], max_epochs: int, mode: str) -> dict[str, Any]:
    name = old["name"]
    if name == "none":
        return {"_target_": None}
    if name == "step":
        new = {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": old.get("step_size", 10),
               "gamma": old.get("gamma", 0.1)}
    elif name == "cosine":
        new = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": max(1, max_epochs),
               "eta_min": old.get("min_lr", 0.0)}
    else:
        new = {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "mode": mode,
               "patience": old.get("patience", 5), "factor": old.get("factor", 0.1), "min_lr": old.get("min_lr", 0.0)}
    return {**new, "_partial_": True}


def upgraded(cfg: DictConfig) -> DictConfig:
    """`cfg` with a `name`-style optimizer and scheduler replaced by the `_target_` configs they meant."""
    plain = OmegaConf.to_container(cfg)
    assert isinstance(plain, dict)
    optimizer, scheduler = plain.get("optimizer") or {}, plain.get("scheduler") or {}
    if "name" in optimizer and "_target_" not in optimizer:
        plain["optimizer"] = _optimizer(optimizer)
    if "name" in scheduler and "_target_" not in scheduler:
        max_epochs = int((plain.get("trainer") or {}).get("max_epochs") or 1)
        plain["scheduler"] = _scheduler(scheduler, max_epochs, str(plain.get("monitor_mode", "min")))
    model = plain.get("model")
    if isinstance(model, dict) and "_target_" not in model:  # the MLP, before networks were named by target
        plain["model"] = {"_target_": "experiments.models.mlp.build_mlp", "_partial_": True, **model}
    plain.pop("steps_per_item", None)  # an earlier speed setting; training is the same without it
    for callback in (plain.get("callbacks") or {}).values():  # a subclass that only copied metrics faster
        if isinstance(callback, dict) and callback.get("_target_") in _RETIRED_CALLBACKS:
            callback["_target_"] = _RETIRED_CALLBACKS[callback["_target_"]]
    return OmegaConf.create(plain)
