"""Which jobs of a sweep can train as one population: equal `population_key`s (torch-free, for the launcher)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

BUILD_MLP = "experiments.models.mlp.build_mlp"
# Optimizer options every member shares (they choose a kernel, not a trajectory).
SHARED_OPTIMIZER_KEYS = ("_target_", "_partial_", "fused", "foreach", "capturable", "differentiable")
# The callbacks a population reproduces per member (SWA as shipped); any other needs a run alone.
_KNOWN_CALLBACKS = {"model_checkpoint", "last_checkpoint", "nan_guard", "loss_threshold", "progress_bar",
                    "early_stopping", "learning_curve", "swa"}
SWA = "lightning.pytorch.callbacks.StochasticWeightAveraging"
# AdamW is Adam with `decoupled_weight_decay=True`, a per-group option of Adam since torch 2.7 (AdamW is
# its subclass there, the same step): members of either class share one Adam optimizer, a flag per group.
DECOUPLED_TWINS = {"torch.optim.AdamW": "torch.optim.Adam"}
# Optimizers whose update of each weight depends on that weight's gradient history alone: members' weights
# stacked in one tensor then step as each member's would. Others (Adafactor's factored statistics, LBFGS's
# line search over every weight) would mix members: their jobs train alone.
ELEMENTWISE_OPTIMIZERS = {f"torch.optim.{name}" for name in (
    "SGD", "Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad", "Adadelta", "RMSprop", "Rprop", "ASGD")}


@lru_cache(maxsize=1)
def adam_has_decoupled_groups() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:  # the installed version, read without importing torch (the launcher groups jobs before that)
        major, minor = (int(part) for part in version("torch").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (2, 7)


def population_optimizer(options: Mapping[str, Any]) -> tuple[str, dict[str, bool]]:
    """The optimizer class a member trains with in a population, and the options its parameter group adds
    to stay the member's own: AdamW is Adam with `decoupled_weight_decay=True`, and an Adam member's group
    says False (the optimizer's defaults are its first member's)."""
    target = str(options.get("_target_"))
    if not adam_has_decoupled_groups():
        return target, {}
    if target in DECOUPLED_TWINS:
        return DECOUPLED_TWINS[target], {"decoupled_weight_decay": True}
    if target in DECOUPLED_TWINS.values():
        return target, {"decoupled_weight_decay": bool(options.get("decoupled_weight_decay", False))}
    return target, {}


def population_key(cfg: DictConfig) -> str | None:
    """Jobs with equal keys can train as one population; None: this job trains alone.

    What may differ between members is left out of the key: seed and shuffle seed, optimizer options,
    regularization, dropout, early stopping and loss-threshold settings, tags, the Optuna trial link.
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    model, trainer = plain.get("model") or {}, plain.get("trainer") or {}
    callbacks = plain.get("callbacks") or {}
    scheduler = str((plain.get("scheduler") or {}).get("_target_") or "")
    checkpoint = callbacks.get("model_checkpoint") or {}
    swa = callbacks.get("swa")
    stops = [((callbacks.get("early_stopping") or {}).get("patience")),
             ((callbacks.get("loss_threshold") or {}).get("threshold"))]
    alone = (
        model.get("_target_", BUILD_MLP) != BUILD_MLP
        or plain.get("resume") or plain.get("ckpt_path") or plain.get("skip_finished")
        or plain.get("log_checkpoints", "none") != "none"
        or trainer.get("devices", 1) != 1 or trainer.get("num_nodes", 1) != 1 or trainer.get("strategy")
        or trainer.get("accelerator") == "tpu"
        or trainer.get("gradient_clip_val") is not None or trainer.get("accumulate_grad_batches", 1) != 1
        # fp16 mixed precision's loss scaler skips a step for all when any gradient is not finite: one
        # diverging member would stall the others.
        or str(trainer.get("precision")) in ("16-mixed", "16")
        or scheduler.endswith("ReduceLROnPlateau")  # watches one value; members have several
        or set(callbacks) - _KNOWN_CALLBACKS
        or checkpoint.get("monitor") != "${monitor}"  # a run alone tests the monitor's best epoch
        or not isinstance(plain.get("optimized_metric"), str | list)
        or str((plain.get("optimizer") or {}).get("_target_")) not in ELEMENTWISE_OPTIMIZERS
        # Weight averaging goes on over every epoch a run trains: members that stop early train alone.
        or (swa is not None and (swa.get("_target_") != SWA or any(stop is not None for stop in stops)))
    )
    if alone:
        return None
    for key in ("seed", "tags", "optuna"):
        plain.pop(key, None)
    plain.pop("regularization", None)
    plain["data"] = {k: v for k, v in plain["data"].items() if k != "shuffle_seed"}
    plain["model"] = {k: v for k, v in model.items() if k != "dropout"}
    plain["optimizer"] = {k: v for k, v in plain["optimizer"].items() if k in SHARED_OPTIMIZER_KEYS}
    plain["optimizer"]["_target_"] = population_optimizer(plain["optimizer"])[0]
    plain["callbacks"] = {
        name: ({k: v for k, v in node.items() if k not in ("patience", "min_delta", "threshold")}
               if isinstance(node, dict) else node)
        for name, node in callbacks.items()
    }
    plain["logger"] = {k: v for k, v in (plain.get("logger") or {}).items() if k not in ("run_name", "run_id")}
    return json.dumps(plain, sort_keys=True, default=str)
