"""The sweep loop: ask a batch of trials, launch them through Hydra's launcher, tell the results."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import Trial, TrialState

from . import _heartbeat, _study, storage
from ._report import write_summary
from ._search_space import SearchSpace, format_value, grid_values, parse_search_space, quote
from .errors import SweeperConfigError, SweepFailedError
from .jobs import job_failure
from .trial_link import OVERRIDE_KEY

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    state: TrialState
    values: list[float] | None = None
    reason: str | None = None


class OptunaSweeperImpl:
    def __init__(self, conf: DictConfig) -> None:
        self.conf = conf
        self.launcher: Launcher | None = None
        self.config: DictConfig | None = None
        self.summary_files: list[Path] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # Validate here, not in __init__: errors raised inside Hydra's instantiate() get wrapped in
        # a multi-line InstantiationException instead of reaching the user as one sentence.
        self._validate()
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        # absolute now: a job may chdir into its own dir while the sweeper still runs
        self.sweep_dir = str(Path(str(config.hydra.sweep.dir)).absolute())
        self.storage = storage.resolve_storage_url(self.conf.storage, str(config.hydra.runtime.cwd))
        self.study_name = str(self.conf.study_name or config.hydra.job.name)

    def _validate(self) -> None:
        conf = self.conf
        self.directions = _study.directions_of(conf.direction)
        if conf.sampler not in _study.SAMPLERS:
            raise SweeperConfigError(
                f"hydra.sweeper.sampler must be one of {', '.join(_study.SAMPLERS)}, got {conf.sampler!r}."
            )
        if conf.n_trials < 0 or conf.n_jobs < 1:
            raise SweeperConfigError("hydra.sweeper.n_trials must be >= 0 and hydra.sweeper.n_jobs >= 1.")
        if conf.total_trials is not None and conf.total_trials < 1:
            raise SweeperConfigError("hydra.sweeper.total_trials must be null or >= 1.")
        if not isinstance(conf.heartbeat_interval, int) or conf.heartbeat_interval < 0:
            raise SweeperConfigError("hydra.sweeper.heartbeat_interval must be a whole number of seconds >= 0 (0: off).")
        if not 0.0 <= conf.max_failure_rate <= 1.0:
            raise SweeperConfigError("hydra.sweeper.max_failure_rate must be between 0.0 and 1.0.")
        self.pruner_cfg = _study.pruner_settings(conf.pruner or "none", conf.n_startup_trials, conf.n_warmup_steps)

    def sweep(self, arguments: list[str]) -> None:
        assert self.launcher is not None and self.config is not None
        space = parse_search_space(self._params_overrides() + list(arguments))
        grid = None
        if self.conf.sampler == "grid":
            grid = {k: grid_values(k, d) for k, d in space.distributions.items()}
        kwargs = OmegaConf.to_container(self.conf.sampler_kwargs, resolve=True)
        assert isinstance(kwargs, dict)
        sampler = _study.build_sampler(self.conf.sampler, self.conf.seed, kwargs, grid, len(self.directions))
        study = _study.create_or_load_study(
            self.storage, self.study_name, self.directions, sampler, self.pruner_cfg, self.conf.heartbeat_interval
        )
        resumed_at = len(study.get_trials(deepcopy=False))
        if self.conf.seed is not None and resumed_at and grid is None:
            # The same seed again would replay the first invocation's random (startup) proposals;
            # offset by the study's size: still reproducible, no repeated trials. Not for the grid
            # sampler: its seed orders the grid, so another seed would map the trials' grid ids to other
            # points, and the points already run would be run again.
            study.sampler = _study.build_sampler(
                self.conf.sampler, self.conf.seed + resumed_at, kwargs, grid, len(self.directions)
            )
        bound = self.conf.total_trials
        if grid is not None:
            grid_size = math.prod(len(v) for v in grid.values())
            bound = grid_size if bound is None else min(bound, grid_size)
        log.info(
            "Optuna study %r in %s: sampler=%s, directions=%s, n_trials=%d, n_jobs=%d",
            self.study_name, self.storage, self.conf.sampler, self.directions, self.conf.n_trials, self.conf.n_jobs,
        )  # fmt: skip

        counts = {"launched": 0, "complete": 0, "pruned": 0, "failed": 0}
        heartbeat = _heartbeat.Heartbeat(self.storage, self.study_name, self.conf.heartbeat_interval)
        with _heartbeat.optuna_heartbeat_warnings_silenced():
            optuna.storages.fail_stale_trials(study)
            heartbeat.adopt_silent_trials(study)
        try:
            while counts["launched"] < self.conf.n_trials:
                batch = min(self.conf.n_jobs, self.conf.n_trials - counts["launched"])
                with _heartbeat.optuna_heartbeat_warnings_silenced():
                    optuna.storages.fail_stale_trials(study)  # RUNNING trials of a sweep that was killed
                    trials = self._ask(study, space, batch, bound)
                    heartbeat.record(trials)
                if not trials:
                    log.info(
                        "Study %r already holds its bound of %s trials; stopping.", self.study_name, bound
                    )
                    break
                self._run_batch(study, trials, space, counts, heartbeat)
                self._check_failures(counts)
        except BaseException:
            try:
                self.summary_files = write_summary(study, self.sweep_dir, counts)
            except Exception as e:  # noqa: BLE001 — keep the original error in front of the user
                log.warning("Could not write the Optuna summary: %s", e)
            raise
        with _heartbeat.optuna_heartbeat_warnings_silenced():
            optuna.storages.fail_stale_trials(study)  # those whose grace period ran out while this one swept
        self.summary_files = write_summary(study, self.sweep_dir, counts)

    def _run_batch(
        self, study: optuna.Study, trials: list[Trial], space: SearchSpace, counts: dict[str, int],
        heartbeat: _heartbeat.Heartbeat,
    ) -> None:
        told: set[int] = set()
        try:
            overrides = self._job_overrides(trials, space)
            with heartbeat.beating(trials):
                try:
                    launcher: Any = self.launcher
                    returns = launcher.launch(overrides, initial_job_idx=trials[0].number)
                except BrokenProcessPool as err:
                    # A launcher's worker process died (killed, out of memory): its batch is lost, not the
                    # sweep. The runs it left open are closed FAILED as the sweep ends (sweep_orphans).
                    reason = f"a launcher worker process died ({type(err).__name__}: killed, or out of memory?)"
                    log.warning("Trials %s failed: %s; the sweep goes on.", ", ".join(str(t.number) for t in trials),
                                reason)
                    self._report_lost_jobs(overrides, trials[0].number, err)
                    returns = [None] * len(trials)
            for trial, ret in zip(trials, returns):
                if ret is None:
                    trial.set_user_attr("fail_reason", reason)
                    study.tell(trial, state=TrialState.FAIL)
                    told.add(trial.number)
                    counts["failed"] += 1
                    continue
                outcome = self._outcome(trial, ret)
                if outcome.reason:
                    trial.set_user_attr("fail_reason", outcome.reason)
                study.tell(trial, values=outcome.values, state=outcome.state)
                told.add(trial.number)
                key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(
                    outcome.state, "failed"
                )
                counts[key] += 1
        finally:
            # A launcher error or Ctrl-C must not leave trials RUNNING forever: they would count
            # against total_trials and hide grid points from later workers.
            for trial in trials:
                if trial.number not in told:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            counts["launched"] += len(trials)

    def _params_overrides(self) -> list[str]:
        params = self.conf.params or {}
        return [f"{k}={v}" for k, v in params.items()]

    def _ask(self, study: optuna.Study, space: SearchSpace, batch: int, bound: int | None) -> list[Trial]:
        """Ask up to `batch` trials. With a bound, counting and asking happen under the storage lock so
        concurrent workers cannot overshoot it (exact for sqlite; best effort for server databases)."""
        if bound is None:
            return [study.ask(space.distributions) for _ in range(batch)]
        with storage.storage_lock(self.storage):
            room = bound - len(study.get_trials(deepcopy=False))
            return [study.ask(space.distributions) for _ in range(max(0, min(batch, room)))]

    def _job_overrides(self, trials: Sequence[Trial], space: SearchSpace) -> list[list[str]]:
        link = [
            f"++{OVERRIDE_KEY}.storage={quote(self.storage)}",
            f"++{OVERRIDE_KEY}.study_name={quote(self.study_name)}",
        ]
        return [
            [f"{k}={format_value(v)}" for k, v in t.params.items()]
            + list(space.fixed.values())
            + link
            + [f"++{OVERRIDE_KEY}.trial_number={t.number}"]
            for t in trials
        ]

    def _report_lost_jobs(self, overrides: list[list[str]], first: int, err: BaseException) -> None:
        """Hydra's `on_job_end` callbacks for jobs whose worker died, as their launcher would have called
        them: the sweep's parent run then counts them as failed jobs."""
        from omegaconf import open_dict

        assert self.config is not None
        for num, job_overrides in enumerate(overrides, start=first):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(job_overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
                sweep_config.hydra.job.num = num
            lost = JobReturn(overrides=list(job_overrides), status=JobStatus.FAILED, _return_value=err)
            self.hydra_context.callbacks.on_job_end(config=sweep_config, job_return=lost)

    def _outcome(self, trial: Trial, ret: JobReturn) -> Outcome:
        if ret.status != JobStatus.COMPLETED:
            error = job_failure(ret)
            if isinstance(error, optuna.TrialPruned):
                log.info("Trial %d pruned: %s", trial.number, error)
                return Outcome(TrialState.PRUNED)
            if isinstance(error, BaseException):
                # As Hydra does for a single run: the message, and the traceback on request only
                # (a trial refused for a bad value should read as one sentence, not a stack).
                full = _full_errors_requested()
                log.warning(
                    "Trial %d failed: %s: %s%s", trial.number, type(error).__name__, error,
                    "" if full else " (HYDRA_FULL_ERROR=1 shows its traceback)", exc_info=error if full else None,
                )
                return Outcome(TrialState.FAIL, reason=f"{type(error).__name__}: {error}")
            return Outcome(TrialState.FAIL, reason=f"job status {ret.status.name}")
        values, reason = _objective_values(ret.return_value, len(self.directions))
        if values is None:
            log.warning("Trial %d failed: %s", trial.number, reason)
            return Outcome(TrialState.FAIL, reason=reason)
        return Outcome(TrialState.COMPLETE, values=values)

    def _check_failures(self, counts: dict[str, int]) -> None:
        # Rated against this invocation's n_trials, so early failures do not stop a sweep that can
        # still end below the rate, while a sweep bound to exceed it stops as soon as that is certain.
        limit = self.conf.max_failure_rate * self.conf.n_trials
        if counts["failed"] > limit:
            raise SweepFailedError(
                f"Optuna sweep stopped: {counts['failed']} of {counts['launched']} trials failed, more than "
                f"max_failure_rate={self.conf.max_failure_rate} of n_trials={self.conf.n_trials} allows; "
                "see the trial errors above (or raise hydra.sweeper.max_failure_rate)."
            )


def _objective_values(value: Any, n_objectives: int) -> tuple[list[float] | None, str | None]:
    """The task's return value as floats, or None with the reason (None, NaN, wrong shape)."""
    is_seq = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    raw = list(value) if is_seq else [value]
    if len(raw) != n_objectives:
        return None, f"the task returned {value!r}; expected {n_objectives} objective value(s)"
    try:
        floats = [float(v) for v in raw]
    except (TypeError, ValueError):
        return None, f"the task returned {value!r}, which is not a number"
    if any(math.isnan(v) for v in floats):
        return None, f"the task returned NaN ({value!r})"
    return floats, None


def _full_errors_requested() -> bool:
    """HYDRA_FULL_ERROR=1 set by the user; `experiments train` also sets it (to report mistakes as one
    sentence itself), marking that with EXPERIMENTS_ERRORS_AS_SENTENCES=1."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get("EXPERIMENTS_ERRORS_AS_SENTENCES") != "1"
