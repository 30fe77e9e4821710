"""One member of a population: what it holds from opening to closing, and how its MLflow run is closed
(test scores, learning curve, model, metrics, status; or the reason it ended), as `train` closes a run
trained alone."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import TrainingFailed, UserError
from experiments.learning_curve_plot import curve_keys, log_learning_curve
from experiments.population_grouping import SHARED_OPTIMIZER_KEYS, population_optimizer
from experiments.run_names import run_name_for
from experiments.timing import marked
from experiments.tracking.sweep_job import objective_value


@dataclass
class Member:
    cfg: DictConfig
    logger: Any = None
    net: Any = None
    generator: Any = None
    n_params: int = 0
    error: BaseException | None = None  # what ended it before or during training
    # Filled in by training: where it stands (models/population_module.MemberState), its settings,
    # test scores, whether its weights are averaged ones, whether it is its population's best.
    state: Any = None
    settings: Any = None
    tested: dict[str, float] = field(default_factory=dict)
    averaged: bool = False
    is_best: bool = False
    last_epoch: int = 0


def finish(member: Member, datamodule: Any, plots: Any, writer: Any) -> Any:
    """Close a trained member's run FINISHED and return its objective; raise what stopped it (a
    non-finite loss, pruning). `plots` is the population's `plot_worker.PlotWorker`, `writer` its
    `population_writer.PopulationWriter`; either may be None."""
    from experiments.models.tasks import main_metric
    from experiments.tracking.run import finish_run, log_trained_model

    state = member.state
    if state.failure is not None:
        raise TrainingFailed(state.failure)
    if state.pruned is not None:
        import optuna

        raise optuna.TrialPruned(state.pruned)
    cfg, logger = member.cfg, member.logger
    metrics = dict(state.history[max(state.history)]) if state.history else {}
    metrics.update(member.tested)
    stopping = _early_stopping_summary(member.settings, state, member.last_epoch)
    if logger is not None:
        logger.log_metrics({**member.tested, **stopping}, step=0)
        main = main_metric(datamodule.task)
        if cfg.callbacks.get("learning_curve") is not None:
            with marked("member_plot"):
                drawn = plots.path(id(member)) if plots is not None else None
                _log_learning_curve(logger, state.history, main, cfg.callbacks.learning_curve, drawn, writer)
        if logs_model(cfg, member.is_best):
            from experiments.tracking.pyfunc_model import TabularModel

            weights_epoch = max(state.history) if member.averaged else max(state.best_epoch, 0)
            with marked("member_model"):
                log_trained_model(logger, TabularModel(datamodule.preparation, member.net),
                                  datamodule.example_rows(), weights_epoch)
        with marked("member_metrics"):
            logger.write_pending(raise_errors=True)  # raised: the caller closes the run FAILED
        with marked("member_status"):
            finish_run(logger, "FINISHED")
    metrics["model/n_params"] = float(member.n_params)
    run = f" (run {logger.run_id})" if logger is not None else ""
    print(f"  {run_name_for(cfg)}: {cfg.monitor}_best={metrics.get(f'{cfg.monitor}_best', float('nan')):.4g}"
          f"{run}", flush=True)
    return objective_value(metrics, cfg)


def finish_failed(member: Member, err: BaseException) -> None:
    """Close the member's run as `err` ended it: KILLED when pruned, FAILED with the reason otherwise."""
    if member.logger is None:
        return
    from experiments.optuna_trial import close_pruned_run, is_trial_pruned
    from experiments.tracking.run import close_failed

    if is_trial_pruned(err):
        close_pruned_run(member.logger, err)
    else:
        reason = str(err) if isinstance(err, TrainingFailed | UserError) else f"{type(err).__name__}: {err}"
        close_failed(member.logger, err, reason)
    member.logger = None


def plots_curve(member: Member) -> bool:
    return member.logger is not None and member.cfg.callbacks.get("learning_curve") is not None


def curve_series(history: dict[int, dict[str, float]], metric: str) -> dict[str, dict[int, float]]:
    """The plot's lines (train and val loss and main metric) from a member's per-epoch history."""
    series: dict[str, dict[int, float]] = {}
    for epoch, values in history.items():
        for key in curve_keys(metric):
            if key in values:
                series.setdefault(key, {})[epoch] = values[key]
    return series


def member_settings(cfg: DictConfig) -> Any:
    """What of the member's config may differ from the other members' (`models.population_module.MemberSettings`)."""
    from experiments.models.optim import optimizer_arguments
    from experiments.models.population_module import MemberSettings

    options = OmegaConf.to_container(cfg.optimizer, resolve=True)
    assert isinstance(options, dict)
    group = {k: v for k, v in optimizer_arguments(options).items() if k not in SHARED_OPTIMIZER_KEYS}
    group.update(population_optimizer(options)[1])
    reg = cfg.regularization
    stopping = cfg.callbacks.get("early_stopping") or {}
    threshold = cfg.callbacks.get("loss_threshold") or {}
    return MemberSettings(
        optimizer=group, l1=float(reg.get("l1", 0.0)), l2=float(reg.get("l2", 0.0)),
        label_smoothing=float(reg.get("label_smoothing", 0.0)), max_norm=float(reg.get("max_norm", 0.0)),
        patience=None if stopping.get("patience") is None else int(stopping.patience),
        min_delta=float(stopping.get("min_delta", 0.0)),
        loss_threshold=None if threshold.get("threshold") is None else float(threshold.threshold),
        threshold_monitor=str(threshold.get("monitor", "train/loss")),
    )


def logs_model(cfg: DictConfig, is_best: bool) -> bool:
    """`logger.log_model`: true (every member), false (none), or best (the population's best member)."""
    setting = cfg.logger.get("log_model", True)
    return is_best if setting == "best" else bool(setting)


def _early_stopping_summary(settings: Any, state: Any, last_epoch: int) -> dict[str, float]:
    """The one-off values a run alone with early stopping logs (see callbacks/early_stopping.py)."""
    if settings.patience is None:
        return {}
    return {"early_stopping/best_epoch": float(state.es_best_epoch),
            "early_stopping/stopped_epoch": float(state.stopped_epoch or last_epoch),
            "early_stopping/restored": 1.0}


def _log_learning_curve(logger: Any, history: dict[int, dict[str, float]], metric: str, node: Any,
                        drawn: Path | None = None, writer: Any = None) -> None:
    """Log the member's learning curve: `drawn` by the plotting worker, or drawn here; a drawn one is
    logged by the population writer if it has caught up (waited for before the run closes)."""
    artifact_path = str(node.get("artifact_path", "plots"))
    if drawn is not None:
        here = functools.partial(logger.experiment.log_artifact, logger.run_id, str(drawn), artifact_path)
        if writer is None or not writer.idle():
            here()
        else:
            logger.before_close.append(
                writer.submit_artifact(logger.experiment.tracking_uri, logger.run_id, drawn, artifact_path, here))
        return
    log_learning_curve(logger.experiment, logger.run_id, curve_series(history, metric), metric,
                       str(node.get("filename", "learning_curve.png")), artifact_path)
