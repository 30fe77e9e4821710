"""Check a composed config before anything heavy is imported.

Each check raises `UserError` with one sentence: what is wrong and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig

from experiments import choices
from experiments.errors import UserError


def _one_of(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not known; choose one of: {', '.join(allowed)}.")


def _positive(key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise UserError(f"{key} must be a positive number, got {value!r}.")


def validate_config(cfg: DictConfig) -> None:
    """Refuse values that would fail deep inside training with a confusing traceback."""
    net = cfg.model
    _one_of("model.activation", net.activation, choices.ACTIVATIONS)
    _one_of("model.norm", net.norm, choices.NORMS)
    _one_of("model.init", net.init, choices.INITS)
    hidden = list(net.hidden_dims or [])
    for width in hidden:
        if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
            raise UserError(f"model.hidden_dims must hold positive integers, got {hidden}.")
    if net.input_dim is not None:
        _positive("model.input_dim", net.input_dim)
    if not 0.0 <= float(net.dropout) < 1.0:
        raise UserError(f"model.dropout must be in [0, 1), got {net.dropout}.")

    _one_of("optimizer.name", cfg.optimizer.name, choices.OPTIMIZERS)
    _positive("optimizer.lr", cfg.optimizer.lr)
    if float(cfg.optimizer.weight_decay) < 0:
        raise UserError(f"optimizer.weight_decay must be >= 0, got {cfg.optimizer.weight_decay}.")
    fused = cfg.optimizer.get("fused", False)
    if fused not in (True, False, "auto"):
        raise UserError(f"optimizer.fused must be true, false or auto, got {fused!r}.")
    if fused is True and cfg.optimizer.name not in choices.FUSED_OPTIMIZERS:
        raise UserError(f"optimizer.fused=true is available for {', '.join(choices.FUSED_OPTIMIZERS)}, "
                        f"not {cfg.optimizer.name}; use optimizer.fused=auto or false.")
    _one_of("scheduler.name", cfg.scheduler.name, choices.SCHEDULERS)

    data = cfg.data
    _one_of("data.dataset", data.dataset, choices.DATASETS)
    _one_of("data.task", data.task, choices.TASKS)
    _positive("data.batch_size", data.batch_size)
    eval_batch = data.get("eval_batch_size", "auto")
    if eval_batch != "auto" and (not isinstance(eval_batch, int) or isinstance(eval_batch, bool) or eval_batch <= 0):
        raise UserError(f"data.eval_batch_size must be a positive whole number of rows or 'auto', got {eval_batch!r}.")
    fractions = {k: float(data.split[k]) for k in ("train", "val", "test")}
    if any(f < 0 for f in fractions.values()) or fractions["train"] <= 0 or sum(fractions.values()) > 1 + 1e-9:
        raise UserError(
            f"data.split fractions must be >= 0 with train > 0 and sum <= 1, got {fractions}."
        )
    if fractions["val"] <= 0:
        raise UserError("data.split.val must be > 0: validation metrics drive early stopping and sweeps.")

    reg = cfg.get("regularization")
    if reg is not None:
        for key in ("l1", "l2", "input_noise", "max_norm"):
            if float(reg.get(key, 0.0)) < 0:
                raise UserError(f"regularization.{key} must be >= 0, got {reg[key]}.")
        if not 0.0 <= float(reg.get("label_smoothing", 0.0)) < 1.0:
            raise UserError(f"regularization.label_smoothing must be in [0, 1), got {reg.label_smoothing}.")
    if cfg.monitor_mode not in ("min", "max"):
        raise UserError(f"monitor_mode must be 'min' or 'max', got {cfg.monitor_mode!r}.")
    every = cfg.get("checkpoint_every_s", 0)
    if not isinstance(every, (int, float)) or isinstance(every, bool) or every < 0:
        raise UserError(f"checkpoint_every_s must be a number of seconds >= 0 (0 = every epoch), got {every!r}.")
    accumulate = (cfg.get("trainer") or {}).get("accumulate_grad_batches", 1)
    if accumulate not in (None, 1):
        raise UserError(
            f"trainer.accumulate_grad_batches={accumulate!r} is not supported: the module steps the optimizer "
            "itself (several steps per Lightning item); raise data.batch_size for larger batches instead."
        )
    _validate_early_stopping((cfg.get("callbacks") or {}).get("early_stopping"))


def _validate_early_stopping(stopper: Any) -> None:
    if stopper is None or stopper.get("patience") is None:
        return
    patience = stopper.patience
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
        raise UserError(f"callbacks.early_stopping.patience must be a positive integer (epochs), or null for off; "
                        f"got {patience!r}.")
    if not isinstance(stopper.get("min_delta", 0.0), (int, float)) or float(stopper.get("min_delta", 0.0)) < 0:
        raise UserError(f"callbacks.early_stopping.min_delta must be a number >= 0, got {stopper.min_delta!r}.")
