"""Structured config of the population launcher, registered as `hydra/launcher: population`.

Import-light and without `from __future__ import annotations` (see the Optuna sweeper's config.py);
`Optional` for OmegaConf's structured configs.
"""

# ruff: noqa: UP045

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.experiments_population_launcher.launcher.PopulationLauncher"
    # Most members trained as one population; a bigger group is split into populations of this size.
    max_members: int = 64
    # Memory one population may plan to take, in GB; null: half of what the machine (or the GPU) has
    # free. A group that needs more trains as several populations, one after another.
    memory_gb: Optional[float] = None


ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf,
                             provider="experiments_population_launcher")
