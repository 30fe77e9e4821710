"""A population's members, each reported where a run alone reports: its MLflow run and its Optuna trial."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

# The longest a member's epoch values wait in memory before they are written to its run while training.
MOST_WAIT_S = 30.0


class MemberRecords(pl.Callback):
    """After each validation, every member's new epoch values go to its own MLflow logger (buffered, as
    a run alone's are) and, in an Optuna sweep, its monitor to its trial, whose pruner may stop it.

    A run alone writes its buffer every `flush_every_s`; K members doing so would write K times as often,
    each write as dear as one of a run alone, and spend much of a small population's training writing.
    So a member waits K times as long (at most `MOST_WAIT_S`): the population writes about as often as
    one run, and every member's values are still all written as its run closes. A member whose values
    another process writes (`logger.hand_off`, the population writer) hands them off as often as a run
    alone writes them."""

    def __init__(self, loggers: list[Any], trial_links: list[dict[str, Any] | None], monitor: str) -> None:
        for logger in loggers:
            if logger is not None and logger.hand_off is None:
                logger.flush_every_s = max(logger.flush_every_s, min(logger.flush_every_s * len(loggers), MOST_WAIT_S))
        self.loggers = loggers
        self.trial_links = trial_links
        self.monitor = monitor
        self._trials: dict[int, Any] = {}
        self._logged: list[set[int]] = [set() for _ in loggers]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        for m, state in enumerate(pl_module.states):
            for epoch in sorted(set(state.history) - self._logged[m]):
                self._logged[m].add(epoch)
                values = state.history[epoch]
                if self.loggers[m] is not None:
                    self.loggers[m].log_metrics({**values, "epoch": epoch})
                if self.trial_links[m] is not None and state.active and self.monitor in values:
                    self._report(pl_module, m, values[self.monitor], epoch)

    def _report(self, pl_module: Any, m: int, value: float, epoch: int) -> None:
        import optuna

        from hydra_plugins.experiments_optuna_sweeper import TrialLink, report_and_check

        if m not in self._trials:
            link = TrialLink.from_config(self.trial_links[m])
            assert link is not None
            self._trials[m] = link.open_trial()
        try:
            report_and_check(self._trials[m], value, epoch)
        except optuna.TrialPruned as pruned:
            pl_module.prune_member(m, str(pruned))
