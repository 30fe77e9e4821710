"""Heartbeats for asked trials, so a sweep killed outright does not leave them RUNNING forever.

Optuna records heartbeats itself only inside `study.optimize`; this sweeper asks and tells, so it
beats for its own trials through the storage's public heartbeat API while their jobs run. A trial
whose heartbeat is older than the grace period belongs to a sweep that died (SIGKILL, power loss):
the next sweep on the study marks it FAIL before asking for new trials. A trial of a sweep still
running in another terminal keeps beating and is left alone.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import optuna
from optuna.trial import Trial

from .storage import open_storage

log = logging.getLogger(__name__)


@contextmanager
def optuna_heartbeat_warnings_silenced() -> Iterator[None]:
    """Optuna marks its heartbeat functions experimental and warns that heartbeats are meant for
    `Study.optimize` on every `ask`; both are expected here, and would repeat for every trial."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


class Heartbeat:
    """The heartbeats of one sweep's trials, through a storage of its own opened once per sweep (the
    periodic beats come from another thread). `record` right after asking leaves a sweep killed in
    between only the few milliseconds of one write in which its new trial could escape detection."""

    def __init__(self, url: str, study_name: str, interval_s: int) -> None:
        self.interval_s = interval_s
        if not interval_s:
            return
        self._storage = open_storage(url)
        self._study_id = self._storage.get_study_id_from_name(study_name)
        self._trial_ids: dict[int, int] = {}  # trial number -> the storage's id, looked up once

    def record(self, trials: Sequence[Trial]) -> None:
        """A heartbeat for each trial now: a trial that never beat is never taken for stale."""
        if not self.interval_s:
            return
        for trial in trials:
            if trial.number not in self._trial_ids:
                self._trial_ids[trial.number] = self._storage.get_trial_id_from_study_id_trial_number(
                    self._study_id, trial.number)
            self._storage.record_heartbeat(self._trial_ids[trial.number])

    def adopt_silent_trials(self, study: optuna.Study) -> None:
        """Give one heartbeat to the study's RUNNING trials that started longer ago than the grace period.

        A sweep killed between asking a trial and its first beat leaves a RUNNING trial that never beat,
        which Optuna never takes for stale. Beating it once, here, makes it stale a grace period later,
        when a sweep on the study (this one's next batch or end, or the next one) fails it. A live trial
        of another worker only gets one beat more. Called once, as the sweep starts, after the stale
        trials were failed."""
        if not self.interval_s:
            return
        from datetime import datetime, timedelta

        from .storage import grace_period_s

        cutoff = datetime.now() - timedelta(seconds=grace_period_s(self.interval_s))
        old = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
               if t.datetime_start is not None and t.datetime_start < cutoff]
        for trial in old:
            self._storage.record_heartbeat(self._storage.get_trial_id_from_study_id_trial_number(
                self._study_id, trial.number))

    @contextmanager
    def beating(self, trials: Sequence[Trial]) -> Iterator[None]:
        """Record the trials' heartbeats every `interval_s` until the block ends."""
        if not self.interval_s or not trials:
            yield
            return
        stop = threading.Event()

        def keep_beating() -> None:
            while not stop.wait(self.interval_s):
                try:
                    self.record(trials)
                except Exception as error:  # noqa: BLE001 - a missed beat must not kill the sweep
                    log.warning("Could not record the trials' heartbeat: %s", error)

        thread = threading.Thread(target=keep_beating, name="optuna-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
