"""Structured config of the population launcher, registered as `hydra/launcher: population`.

Import-light and without `from __future__ import annotations` (see the Optuna sweeper's config.py).
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.experiments_population_launcher.launcher.PopulationLauncher"
    # Most members trained as one population; a bigger group is split into populations of this size.
    max_members: int = 64


ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf,
                             provider="experiments_population_launcher")
