"""How a job reaches the Optuna trial the sweeper asked for it.

The sweeper appends `++optuna.storage=<url> ++optuna.study_name=<name> ++optuna.trial_number=<n>` to
each job's overrides; `TrialLink.from_config(cfg.optuna)` turns that node back into a live trial so the
job can report intermediate values and learn whether to stop. Import-light: optuna loads on first use.
No `from __future__ import annotations` (see config.py).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

OVERRIDE_KEY = "optuna"


@dataclass(frozen=True)
class TrialLink:
    storage: str
    study_name: str
    trial_number: int

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> "TrialLink | None":
        """The link in a job config's `optuna` node, or None when the job was not launched by the sweeper."""
        if not node:
            return None
        return cls(str(node["storage"]), str(node["study_name"]), int(node["trial_number"]))

    def open_trial(self) -> "optuna.trial.Trial":
        """A live Trial bound to the study's pruner (rebuilt from the settings the sweeper stored)."""
        import optuna

        from ._study import PRUNER_ATTR, build_pruner
        from .storage import open_storage

        storage = open_storage(self.storage)
        study_id = storage.get_study_id_from_name(self.study_name)
        pruner = build_pruner(storage.get_study_user_attrs(study_id).get(PRUNER_ATTR))
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=pruner)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
        return optuna.trial.Trial(study, trial_id)


def report_and_check(trial: "optuna.trial.Trial", value: float, step: int) -> None:
    """Report `value` at `step`; raise optuna.TrialPruned when the pruner says stop.

    The job lets the exception propagate: the sweeper sees it in the job's result and tells Optuna
    the trial was PRUNED (not FAILED).
    """
    import optuna

    trial.report(value, step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"Trial {trial.number} pruned at step {step} (value {value:.6g}).")
