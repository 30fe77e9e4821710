"""Structured config of the `experiments_optuna` sweeper, registered as `hydra/sweeper: experiments_optuna`.

Kept import-light (no optuna): Hydra imports every public module of `hydra_plugins` on each start.
No `from __future__ import annotations`: Hydra's scanner runs this module before it is in sys.modules,
where dataclasses cannot resolve string annotations. Optional/Dict spellings: what OmegaConf's
structured configs read reliably.
"""

# ruff: noqa: UP006, UP035, UP045

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ExperimentsOptunaSweeperConf:
    _target_: str = "hydra_plugins.experiments_optuna_sweeper.optuna_sweeper.ExperimentsOptunaSweeper"

    # tpe | random | grid | cmaes (cmaes needs the `cmaes` package); kwargs go to the Optuna sampler class.
    sampler: str = "tpe"
    seed: Optional[int] = None
    sampler_kwargs: Dict[str, Any] = field(default_factory=dict)

    # "minimize" | "maximize", or a list of them for multi-objective (the task returns a list of floats).
    direction: Any = "minimize"

    # RDB URL; null → sqlite:///<hydra.runtime.cwd>/outputs/optuna.db. Relative sqlite paths are made
    # absolute against hydra.runtime.cwd so jobs in other working dirs reach the same file.
    storage: Optional[str] = None
    # null → hydra.job.name. The same storage + study_name resumes the study.
    study_name: Optional[str] = None

    # Trials this invocation adds to the study.
    n_trials: int = 20
    # Optional bound on the whole study (trials in any state, all workers): stop asking once reached.
    total_trials: Optional[int] = None
    # Trials asked for and launched as one batch through the configured Hydra launcher.
    n_jobs: int = 1
    # Stop with an error once failed trials exceed max_failure_rate * n_trials (0.0: first failure stops).
    max_failure_rate: float = 0.5
    # Seconds between heartbeats of this sweep's running trials. A trial left RUNNING by a sweep that
    # was killed outright stops beating; 3 intervals later the next sweep on the study marks it FAIL.
    # 0: no heartbeats (such trials stay RUNNING).
    heartbeat_interval: int = 30

    # none | median | successive_halving (null: none); applied in the jobs when they report intermediate values.
    pruner: Optional[str] = "none"
    # Pruning starts only after this many trials of the study are complete ...
    n_startup_trials: int = 5
    # ... and, within a trial, only from this step (epoch) on.
    n_warmup_steps: int = 0

    # Search space, in Hydra override syntax: key: choice(...) | range(...) | interval(...) |
    # tag(log, interval(...)); a plain value is a fixed override for every trial.
    params: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="experiments_optuna",
    node=ExperimentsOptunaSweeperConf,
    provider="experiments_optuna_sweeper",
)
