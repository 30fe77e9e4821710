"""Report the monitored validation metric to the Optuna trial each epoch; stop the run if it is pruned."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import optuna

from hydra_plugins.experiments_optuna_sweeper.trial_link import TrialLink, report_and_check


class OptunaPruning(pl.Callback):
    """Links a training run to the Optuna trial the `experiments_optuna` sweeper launched it for.

    Build it from the job overrides the sweeper adds: `OptunaPruning(monitor=..., **cfg.optuna)`.
    The pruner itself lives in the study (settings from `hydra.sweeper.pruner`), so with `pruner: none`
    this only records the learning curve. `optuna.TrialPruned` propagates out of `trainer.fit` on purpose:
    the sweeper reads it from the job result and marks the trial PRUNED, not FAILED.
    """

    def __init__(self, monitor: str, storage: str, study_name: str, trial_number: int) -> None:
        self.monitor = monitor
        self.link = TrialLink(storage, study_name, int(trial_number))
        self._trial: optuna.trial.Trial | None = None  # opened lazily: only rank zero touches the storage

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not on_validation_epoch_end: Lightning calls callbacks' epoch-end hooks before the module's,
        # and the module publishes the epoch's metrics in its own on_validation_epoch_end.
        if trainer.sanity_checking:
            return
        pruned_message: str | None = None
        if trainer.is_global_zero:
            pruned_message = self._report(trainer.callback_metrics, trainer.current_epoch)
        # Every rank must stop together, or the others wait forever in the next collective.
        pruned_message = trainer.strategy.broadcast(pruned_message, src=0)
        if pruned_message is not None:
            raise optuna.TrialPruned(pruned_message)

    def _report(self, metrics: dict[str, Any], epoch: int) -> str | None:
        if self.monitor not in metrics:
            raise RuntimeError(
                f"OptunaPruning monitors {self.monitor!r}, which was not logged this epoch; "
                f"logged metrics: {', '.join(sorted(metrics)) or 'none'}."
            )
        if self._trial is None:
            self._trial = self.link.open_trial()
        try:
            report_and_check(self._trial, float(metrics[self.monitor]), epoch)
        except optuna.TrialPruned as e:
            return str(e)
        return None

    def __getstate__(self) -> dict[str, Any]:
        # The live trial holds a DB engine; spawned DDP workers reopen it if they ever need it.
        return {**self.__dict__, "_trial": None}
