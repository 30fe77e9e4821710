"""Storage, sampler, pruner and study construction (optuna imported here, never at plugin scan time)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from .errors import SweeperConfigError
from .storage import open_storage, storage_lock

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("none", "median", "successive_halving")
DIRECTIONS = ("minimize", "maximize")
# Study user attribute holding the pruner settings: jobs rebuild the pruner from it, since Optuna
# does not persist pruners and should_prune() runs in the job, not in the sweeper.
PRUNER_ATTR = "experiments_optuna_pruner"
def directions_of(direction: Any) -> list[str]:
    raw = [direction] if isinstance(direction, str) else list(direction or [])
    values = [str(d).lower() for d in raw]
    if not values or any(d not in DIRECTIONS for d in values):
        raise SweeperConfigError(
            f"hydra.sweeper.direction must be 'minimize', 'maximize' or a list of them, got {direction!r}."
        )
    return values


class _GridSampler(optuna.samplers.GridSampler):
    """GridSampler without its study.stop() call, which only works inside study.optimize();
    the sweeper checks the remaining grid itself before each batch."""

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


def build_sampler(
    name: str,
    seed: int | None,
    kwargs: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]] | None,
    n_objectives: int,
) -> BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **kwargs)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **kwargs)
    if name == "grid":
        assert grid is not None
        return _GridSampler(grid, seed=seed, **kwargs)
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise SweeperConfigError(
                "hydra.sweeper.sampler=cmaes needs the 'cmaes' package: pip install cmaes, or pick tpe, random or grid."
            )
        if n_objectives > 1:
            raise SweeperConfigError(
                "hydra.sweeper.sampler=cmaes supports one objective only; use tpe or random."
            )
        return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)
    raise SweeperConfigError(f"hydra.sweeper.sampler must be one of {', '.join(SAMPLERS)}, got {name!r}.")


class _StartupWarmupPruner(BasePruner):
    """Never prunes before `n_startup_trials` complete trials or before step `n_warmup_steps`,
    so both settings mean the same for every pruner kind."""

    def __init__(self, inner: BasePruner, n_startup_trials: int, n_warmup_steps: int) -> None:
        self._inner = inner
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self._n_warmup_steps:
            return False
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < self._n_startup_trials:
            return False
        return self._inner.prune(study, trial)


def pruner_settings(name: str, n_startup_trials: int, n_warmup_steps: int) -> dict[str, Any]:
    if name not in PRUNERS:
        raise SweeperConfigError(f"hydra.sweeper.pruner must be one of {', '.join(PRUNERS)}, got {name!r}.")
    if n_startup_trials < 0 or n_warmup_steps < 0:
        raise SweeperConfigError("hydra.sweeper.n_startup_trials and n_warmup_steps must be >= 0.")
    return {"name": name, "n_startup_trials": n_startup_trials, "n_warmup_steps": n_warmup_steps}


def build_pruner(settings: Mapping[str, Any] | None) -> BasePruner:
    """The pruner described by `pruner_settings` (NopPruner when absent or 'none')."""
    name = (settings or {}).get("name", "none")
    if name == "none":
        return optuna.pruners.NopPruner()
    assert settings is not None
    inner: BasePruner
    if name == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0)
    elif name == "successive_halving":
        inner = optuna.pruners.SuccessiveHalvingPruner()
    else:
        raise SweeperConfigError(f"Unknown pruner {name!r} stored in the study; expected one of {PRUNERS}.")
    return _StartupWarmupPruner(inner, int(settings["n_startup_trials"]), int(settings["n_warmup_steps"]))


def create_or_load_study(
    url: str, study_name: str, directions: list[str], sampler: BaseSampler, pruner_cfg: Mapping[str, Any],
    heartbeat_interval_s: int = 0,
) -> optuna.Study:
    """Create the study once (under the lock, so two workers starting together share one schema and
    one study), or load it to resume; refuse a study whose directions differ from the config."""
    with storage_lock(url):
        study = optuna.create_study(
            storage=open_storage(url, heartbeat_interval_s),
            study_name=study_name,
            sampler=sampler,
            pruner=build_pruner(pruner_cfg),
            directions=directions,
            load_if_exists=True,
        )
        found = [d.name.lower() for d in study.directions]
        if found != directions:
            raise SweeperConfigError(
                f"Study {study_name!r} in {url} optimizes {found}, but hydra.sweeper.direction is {directions}; "
                "use another hydra.sweeper.study_name."
            )
        study.set_user_attr(PRUNER_ATTR, dict(pruner_cfg))
    return study
