"""Hydra Sweeper plugin `experiments_optuna`: Bayesian search with current Optuna, persistent studies.

A thin shell: the Optuna-importing implementation loads only when the sweeper is used, not each time
Hydra scans plugins.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class ExperimentsOptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        from ._impl import OptunaSweeperImpl

        # Hydra passes config nodes as DictConfig/ListConfig; one DictConfig keeps typing simple.
        self._impl = OptunaSweeperImpl(OmegaConf.create(conf))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self._impl.sweep(arguments)
