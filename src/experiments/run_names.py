"""Readable MLflow run names, e.g. `mlp-relu-10x8-l2=0.001`, and `… lr=0.0003` for a sweep's trial."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Settings the base name already shows, by config key, with the label it uses.
_IN_THE_NAME = {"regularization.l1": "l1", "regularization.l2": "l2", "regularization.input_noise": "noise",
                "regularization.label_smoothing": "ls", "regularization.max_norm": "maxnorm",
                "model.dropout": "dropout", "optimizer.weight_decay": "wd"}
_IN_THE_PREFIX = {"model.activation", "model.hidden_dims", "model.norm"}


def short(value: Any) -> str:
    """A value as a name shows it: numbers to 3 significant digits, lists without spaces."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(short(v) for v in value) + "]"
    return str(value)


def run_name_for(cfg: DictConfig) -> str:
    """The user's `logger.run_name`, else the architecture and every regularizer that is on."""
    if cfg.logger.get("run_name"):
        return str(cfg.logger.run_name)
    target = str(cfg.model.get("_target_") or "experiments.models.mlp.build_mlp")
    if target.endswith(".build_mlp"):
        hidden = "x".join(str(w) for w in cfg.model.hidden_dims) or "linear"
        parts = [f"mlp-{cfg.model.activation}-{hidden}"]
    else:  # a user's own network: named by its builder
        parts = [target.rsplit(".", 1)[-1]]
    for key, label in _IN_THE_NAME.items():
        value = OmegaConf.select(cfg, key)
        if value:
            parts.append(f"{label}={short(value)}")
    if cfg.model.get("norm", "none") != "none":
        parts.append(f"{cfg.model.norm}norm")
    return "-".join(parts)


def trial_run_name(cfg: DictConfig, swept_keys: Iterable[str]) -> str:
    """A sweep trial: the base name plus each swept setting it does not show yet, once each."""
    shown = set(_IN_THE_NAME) | _IN_THE_PREFIX
    extra = [f"{key.split('.')[-1]}={short(OmegaConf.select(cfg, key))}" for key in swept_keys
             if key not in shown and OmegaConf.select(cfg, key, default=None) is not None]
    return " ".join([run_name_for(cfg), *extra])
