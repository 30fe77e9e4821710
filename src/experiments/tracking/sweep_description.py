"""What a multirun's config says about its sweep: the identity that finds its parent run again, the
swept search space, the objective's direction, and the parent run's name and tags."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from experiments.tracking.sweep_points import NAME_TAG, ROLE_TAG, override_key

STUDY_TAG = "sweep.optuna_study"
STORAGE_TAG = "sweep.optuna_storage"
OPTUNA_SWEEPER_TARGET = "hydra_plugins.experiments_optuna_sweeper"
_MAX_TAG = 5000


class SweepConfigError(CompactHydraException, ValueError):
    """A sweep setting the user must change; Hydra prints the message alone."""


def _is_optuna(config: DictConfig) -> bool:
    return OPTUNA_SWEEPER_TARGET in str(config.hydra.sweeper.get("_target_", ""))


def _optuna_identity(config: DictConfig) -> dict[str, str]:
    from hydra_plugins.experiments_optuna_sweeper.storage import resolve_storage_url

    sweeper = config.hydra.sweeper
    storage = resolve_storage_url(sweeper.get("storage"), str(config.hydra.runtime.cwd))
    return {STUDY_TAG: str(sweeper.get("study_name") or config.hydra.job.name), STORAGE_TAG: storage}


def sweep_identity(config: DictConfig) -> dict[str, str]:
    """Tags that find this sweep's parent again; empty for a one-off sweep (a new parent each time)."""
    identity: dict[str, str] = {}
    if config.get("sweep_name"):
        identity[NAME_TAG] = str(config.sweep_name)
    elif _is_optuna(config):
        identity.update(_optuna_identity(config))
    if config.get("skip_finished") and not identity:
        raise SweepConfigError(
            "skip_finished=true needs sweep_name=<name>, so the sweep's earlier runs can be found; "
            "use the same sweep_name as the sweep you are extending."
        )
    return identity


def search_space(config: DictConfig) -> dict[str, str]:
    """Swept keys and their specs, from `hydra.sweeper.params` and sweep overrides on the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = {str(key): str(value) for key, value in (config.hydra.sweeper.get("params") or {}).items()}
    for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        if override.is_sweep_override():
            space[override_key(override.input_line)] = override.input_line.split("=", 1)[1]
    return space


def objective_mode(config: DictConfig) -> str:
    """`min`/`max` for the first objective: the Optuna direction when that sweeper runs, else monitor_mode."""
    if _is_optuna(config):
        direction = config.hydra.sweeper.get("direction", "minimize")
        first = direction if isinstance(direction, str) else direction[0]
        return "max" if str(first).lower() == "maximize" else "min"
    return "max" if str(config.monitor_mode) == "max" else "min"


def _command_line() -> str:
    if os.environ.get("EXPERIMENTS_SUBCOMMAND") == "train":
        return "experiments train " + shlex.join(sys.argv[1:])
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def parent_tags(config: DictConfig, sweep_dir: str, space: dict[str, str]) -> dict[str, str]:
    choices = config.hydra.runtime.get("choices") or {}
    tags = {
        ROLE_TAG: "parent",
        "sweep.command": _command_line(),
        "sweep.overrides": " ".join(config.hydra.overrides.task),
        "sweep.search_space": json.dumps(space),
        "sweep.sweeper": str(choices.get("hydra/sweeper", "")),
        "sweep.launcher": str(choices.get("hydra/launcher", "")),
        "sweep.dir": sweep_dir,
    }
    return {key: value[:_MAX_TAG] for key, value in tags.items()}


def parent_name(config: DictConfig, identity: dict[str, str], sweep_dir: str) -> str:
    if NAME_TAG in identity:
        return f"sweep {identity[NAME_TAG]}"
    if STUDY_TAG in identity:
        return f"optuna {identity[STUDY_TAG]}"
    return "sweep " + " ".join(Path(sweep_dir).parts[-2:])
