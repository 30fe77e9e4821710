"""Check a composed config before anything heavy is imported.

Each check raises `UserError` with one sentence: what is wrong and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig

from experiments import choices
from experiments.arguments import refuse_empty
from experiments.errors import UserError


def _one_of(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not known; choose one of: {', '.join(allowed)}.")


def _positive(key: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise UserError(f"{key} must be a positive number, got {value!r}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(cfg: DictConfig) -> None:
    """Refuse values that would fail deep inside training with a confusing traceback."""
    _check_complete(cfg)
    _one_of("log_checkpoints", cfg.get("log_checkpoints", "none"), choices.LOG_CHECKPOINTS)  # read after training
    for key in ("resume", "ckpt_path"):  # `resume=` would otherwise train a new run from scratch
        refuse_empty(key, cfg.get(key))
    _validate_model(cfg.model)
    if not _is_whole(cfg.seed):
        raise UserError(f"seed must be a whole number, got {cfg.seed!r}.")
    threads = cfg.get("threads", "auto")
    if threads != "auto" and (not _is_whole(threads) or threads < 1):
        raise UserError(f"threads must be a positive whole number or 'auto', got {threads!r}.")
    max_epochs = (cfg.get("trainer") or {}).get("max_epochs")
    if max_epochs is not None and (not _is_whole(max_epochs) or (max_epochs < 1 and max_epochs != -1)):
        raise UserError(f"trainer.max_epochs must be a positive whole number (or -1 for no limit), "
                        f"got {max_epochs!r}.")

    # The class and its arguments are checked against torch (models/optim.py) before any run is recorded.
    if "lr" in cfg.optimizer:
        _positive("optimizer.lr", cfg.optimizer.lr)
    weight_decay = cfg.optimizer.get("weight_decay", 0.0)
    if not _is_number(weight_decay) or weight_decay < 0:
        raise UserError(f"optimizer.weight_decay must be >= 0, got {weight_decay}.")
    fused = cfg.optimizer.get("fused", False)
    if fused not in (True, False, "auto"):
        raise UserError(f"optimizer.fused must be true, false or auto, got {fused!r}.")
    _validate_scheduler(cfg.scheduler)

    data = cfg.data
    _one_of("data.dataset", data.dataset, choices.DATASETS)
    _one_of("data.task", data.task, choices.TASKS)
    _positive("data.batch_size", data.batch_size)
    eval_batch = data.get("eval_batch_size", "auto")
    if eval_batch != "auto" and (not isinstance(eval_batch, int) or isinstance(eval_batch, bool) or eval_batch <= 0):
        raise UserError(f"data.eval_batch_size must be a positive whole number of rows or 'auto', got {eval_batch!r}.")
    fractions = {k: data.split[k] for k in ("train", "val", "test")}
    numbers = all(_is_number(f) for f in fractions.values())
    if (not numbers or any(f < 0 for f in fractions.values()) or fractions["train"] <= 0
            or sum(fractions.values()) > 1 + 1e-9):
        raise UserError(
            f"data.split fractions must be >= 0 with train > 0 and sum <= 1, got {fractions}."
        )
    if fractions["val"] <= 0:
        raise UserError("data.split.val must be > 0: validation metrics drive early stopping and sweeps.")

    reg = cfg.get("regularization")
    if reg is not None:
        for key in ("l1", "l2", "input_noise", "max_norm"):
            value = reg.get(key, 0.0)
            if not _is_number(value) or value < 0:
                raise UserError(f"regularization.{key} must be a number >= 0, got {value!r}.")
        smoothing = reg.get("label_smoothing", 0.0)
        if not _is_number(smoothing) or not 0.0 <= smoothing < 1.0:
            raise UserError(f"regularization.label_smoothing must be a number in [0, 1), got {smoothing!r}.")
    if cfg.monitor_mode not in ("min", "max"):
        raise UserError(f"monitor_mode must be 'min' or 'max', got {cfg.monitor_mode!r}.")
    every = cfg.get("checkpoint_every_s", 0)
    if not isinstance(every, (int, float)) or isinstance(every, bool) or every < 0:
        raise UserError(f"checkpoint_every_s must be a number of seconds >= 0 (0 = every epoch), got {every!r}.")
    _validate_early_stopping((cfg.get("callbacks") or {}).get("early_stopping"))
    if cfg.get("logger") is not None:
        _validate_tracking_uri(cfg.logger.get("tracking_uri"))
        if cfg.logger.get("log_model", True) not in (True, False, "best"):
            raise UserError(f"logger.log_model must be true, false or best (a population's best member only), "
                            f"got {cfg.logger.log_model!r}.")


def _check_complete(cfg: DictConfig) -> None:
    """Every `???` filled in and every `${…}` resolvable; OmegaConf would otherwise fail mid-run."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from experiments.hydra_errors import user_mistake

    # Hydra's own node (in tests) leaves some unset; a job's config has none, and needs no copy.
    run_cfg = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"]) if "hydra" in cfg else cfg
    try:
        OmegaConf.to_container(run_cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise UserError(user_mistake(err) or str(err)) from None


def _validate_model(net: DictConfig) -> None:
    if net.get("input_dim") is not None:
        _positive("model.input_dim", net.input_dim)
    if net.get("_target_", choices.BUILD_MLP) != choices.BUILD_MLP:
        return  # a user's own network builder: its arguments are checked when it is called
    unknown = [str(key) for key in net if key not in choices.MODEL_KEYS]
    if unknown:
        options = [key for key in choices.MODEL_KEYS if not key.startswith("_")]
        raise UserError(f"model.{unknown[0]} is not a model option; the options are: {', '.join(options)} "
                        "(or name your own network builder with model._target_).")
    _one_of("model.activation", net.activation, choices.ACTIVATIONS)
    _one_of("model.norm", net.norm, choices.NORMS)
    _one_of("model.init", net.init, choices.INITS)
    hidden = net.hidden_dims if net.hidden_dims is not None else []
    if isinstance(hidden, (str, int, float)) or not all(_is_whole(width) and width > 0 for width in hidden):
        raise UserError(f"model.hidden_dims must be a list of positive integers, e.g. [64,32] ([] for none), "
                        f"got {hidden!r}.")
    if not _is_number(net.dropout) or not 0.0 <= net.dropout < 1.0:
        raise UserError(f"model.dropout must be a number in [0, 1), got {net.dropout!r}.")
    _positive("model.init_std", net.get("init_std", 0.02))
    if net.get("bias_init") is not None and not _is_number(net.bias_init):
        raise UserError(f"model.bias_init must be a number, or null to keep the layer's default; "
                        f"got {net.bias_init!r}.")


def _validate_scheduler(scheduler: DictConfig) -> None:
    for key in ("step_size", "patience", "T_max"):
        value = scheduler.get(key, 1)
        if not _is_whole(value) or value < (0 if key == "patience" else 1):
            raise UserError(f"scheduler.{key} must be a whole number of epochs, got {value!r}.")
    for key in ("gamma", "factor", "min_lr", "eta_min"):
        value = scheduler.get(key, 0.0)
        if not _is_number(value) or value < 0:
            raise UserError(f"scheduler.{key} must be a number >= 0, got {value!r}.")


def check_monitor(monitor: str, task: str) -> None:
    """`monitor` names a value the training module publishes for this task (checked once the data,
    and so the task, is known; before any run is recorded)."""
    allowed = choices.monitorable_metrics(task)
    if monitor not in allowed:
        raise UserError(f"monitor={monitor!r} is not a metric of a {task} task; choose one of: "
                        f"{', '.join(allowed)}.")


# Stores MLflow's tracking client opens (the file store is refused by MLflow 3).
_TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def _validate_tracking_uri(uri: Any) -> None:
    if uri is None:
        return
    scheme = str(uri).split(":", 1)[0].split("+", 1)[0] if ":" in str(uri) else ""
    if scheme not in _TRACKING_SCHEMES:
        raise UserError(f"logger.tracking_uri={uri!r} is not a store MLflow can open; use sqlite:////abs/path.db, "
                        "http://host:port (an `mlflow server`), or a postgresql/mysql/mssql/databricks URI.")


def _validate_early_stopping(stopper: Any) -> None:
    if stopper is None or stopper.get("patience") is None:
        return
    patience = stopper.patience
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
        raise UserError(f"callbacks.early_stopping.patience must be a positive integer (epochs), or null for off; "
                        f"got {patience!r}.")
    if not isinstance(stopper.get("min_delta", 0.0), (int, float)) or float(stopper.get("min_delta", 0.0)) < 0:
        raise UserError(f"callbacks.early_stopping.min_delta must be a number >= 0, got {stopper.min_delta!r}.")
