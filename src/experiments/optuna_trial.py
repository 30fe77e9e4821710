"""A training job's side of an Optuna sweep (`hydra/sweeper=experiments_optuna`, `sweep=optuna`).

The sweeper adds `++optuna.storage=… ++optuna.study_name=… ++optuna.trial_number=N` to every job. The
job then reports its monitored val metric to that trial each epoch (the pruner may stop it), and a
pruned run is closed KILLED and tagged `optuna.state=PRUNED`, so MLflow and Optuna tell the same story.
Torch-free at import: the Hydra callback below loads in the launching process before any job.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PRUNED_TAG = "optuna.state"  # read by tracking/sweep_summary.py: pruned children are not failures
_SWEEPER_TARGET = "hydra_plugins.experiments_optuna_sweeper"


def pruning_callbacks(cfg: DictConfig) -> list[Any]:
    """The pruning callback for a job the Optuna sweeper launched with one objective; else nothing.

    Optuna only prunes single-objective studies (`Trial.report` refuses multi-objective ones), and a
    resumed trial run (`resume=RUN_ID`) trains outside its sweep, whose trial has ended.
    """
    link = cfg.get("optuna")
    if not link or not isinstance(cfg.optimized_metric, str) or cfg.get("resume"):
        return []
    from experiments.callbacks.pruning import OptunaPruning

    return [OptunaPruning(monitor=str(cfg.monitor), **link)]


def is_trial_pruned(error: BaseException) -> bool:
    """True for `optuna.TrialPruned`; optuna is only loaded in jobs that report to a trial."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(error, optuna.TrialPruned)


def close_pruned_run(logger: Any, error: BaseException) -> None:
    """KILLED (it stopped on purpose, it did not break) with `optuna.state=PRUNED` and the pruner's words."""
    from experiments.tracking.run import finish_run

    logger.experiment.set_tag(logger.run_id, PRUNED_TAG, "PRUNED")
    finish_run(logger, "KILLED", f"TrialPruned: {error}")


def _wanted_direction(monitor_mode: str) -> str:
    return "maximize" if monitor_mode == "max" else "minimize"


def direction_conflict(config: DictConfig) -> str | None:
    """Why this Optuna sweep's direction contradicts the training config, or None.

    The pruner compares the monitored metric (`monitor`, in `monitor_mode`) in the study's direction,
    and the default objective is `${monitor}_best`; a study minimizing what training maximizes would
    keep the worst trials and prune the best.
    """
    sweeper = config.hydra.sweeper
    if _SWEEPER_TARGET not in str(sweeper.get("_target_", "")):
        return None
    direction = sweeper.get("direction", "minimize")
    pruner = str(sweeper.get("pruner") or "none")
    if not isinstance(direction, str):
        if pruner != "none":
            return (f"hydra.sweeper.pruner={pruner} needs one objective, but hydra.sweeper.direction is a list "
                    "(Optuna prunes single-objective studies only); set hydra.sweeper.pruner=none.")
        return None
    monitor, mode = str(config.monitor), str(config.monitor_mode)
    wanted = _wanted_direction(mode)
    objective_is_monitor = str(config.optimized_metric) in (monitor, f"{monitor}_best")
    if direction.lower() == wanted or not (objective_is_monitor or pruner != "none"):
        return None
    return (f"hydra.sweeper.direction={direction} contradicts monitor_mode={mode} (monitor={monitor}); "
            f"set hydra.sweeper.direction={wanted}, or monitor_mode to match.")


class OptunaDirectionCheck(Callback):
    """Stops an Optuna sweep before its first trial when its direction contradicts `monitor_mode`.

    Listed before the sweep parent callback in `conf/hydra/default.yaml`, so no MLflow parent is opened.
    Hydra turns exceptions raised in callbacks into warnings, so this exits (as the CLI does: exit 2).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        conflict = direction_conflict(config)
        if conflict:
            print(f"error: {conflict}", file=sys.stderr)
            sys.exit(2)
