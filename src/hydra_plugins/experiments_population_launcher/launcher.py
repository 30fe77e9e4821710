"""The population launcher: Hydra's basic launcher, except that jobs of one shape train together."""

from __future__ import annotations

import atexit
import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.tracking.server import in_one_sentence

log = logging.getLogger(__name__)


class PopulationLauncher(Launcher):
    def __init__(self, max_members: int = 64, memory_gb: float | None = None) -> None:
        super().__init__()
        self.max_members = max(1, int(max_members))
        self.memory_bytes = None if memory_gb is None else int(float(memory_gb) * 2**30)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.workers: Any = None  # the sweep's `population_workers.PopulationWorkers`, once a launch asks
        self.watches_job_start = True  # whether a Hydra callback acts as a job starts (set up with the sweep)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from experiments.speedups import cache_sweep_configs

        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.watches_job_start = _watches_job_start(hydra_context.callbacks)
        cache_sweep_configs(hydra_context.config_loader)  # each job composed once, not twice

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from experiments import population_host
        from experiments.population_grouping import population_key
        from experiments.population_workers import PopulationWorkers

        setup_globals()
        assert self.hydra_context is not None and self.config is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
        groups: dict[str | None, list[int]] = {}
        for position, sweep_config in enumerate(configs):
            key = population_key(sweep_config)
            groups.setdefault(key if key is not None else f"alone-{position}", []).append(position)
        chunks = [positions[start : start + self.max_members]
                  for positions in groups.values() for start in range(0, len(positions), self.max_members)]
        results: list[JobReturn | None] = [None] * len(configs)
        members = sum(len(chunk) for chunk in chunks if len(chunk) > 1)
        if population_host.current() is None:  # else the host process trains them, with its own workers
            if self.workers is None:  # one set for the sweep process: an Optuna sweep launches batch after batch
                self.workers = PopulationWorkers(members)
                atexit.register(self.workers.close)
            self.workers.members = members
        for chunk in chunks:
            if len(chunk) == 1:
                results[chunk[0]] = self._run_alone(configs[chunk[0]])
            else:
                population = [configs[p] for p in chunk]
                for position, result in zip(chunk, self._run_population(population, members)):
                    results[position] = result
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    def _run_alone(self, sweep_config: DictConfig) -> JobReturn:
        assert self.hydra_context is not None and self.task_function is not None and self.config is not None
        log.info(f"\t#{sweep_config.hydra.job.num} : {' '.join(filter_overrides(sweep_config.hydra.overrides.task))}")
        result = run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                         job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return result

    def _run_population(self, sweep_configs: list[DictConfig], members: int) -> list[JobReturn]:
        """Start every job and check its config, then open every member (each in its job's context), train
        them together, close each in its context. Every job starts before the first member opens: the
        writer saves the jobs' files while the first opening imports Lightning and torch. Where a Hydra
        callback acts as a job starts, each member opens right after its job starts instead, as with
        Hydra's own launchers, and so it does in a population host (which has loaded Lightning already
        and opens the member while the next job starts). `members`: how many of the launch's jobs train in
        populations."""
        from experiments import population_host
        from experiments.population import Population

        population: Any = None
        if (host := population_host.current()) is not None:
            try:
                population = population_host.HostedPopulation(host, len(sweep_configs), self.memory_bytes, members)
            except population_host.HostDied:  # trained here instead
                pass
        population = population or Population(len(sweep_configs), self.memory_bytes, self.workers)
        # A host has loaded Lightning already: each member opens there while the next job starts here.
        interleaved = self.watches_job_start or isinstance(population, population_host.HostedPopulation)
        try:
            results = [JobReturn() for _ in sweep_configs]
            checked: list[int] = []
            opened: list[int] = []
            for i, sweep_config in enumerate(sweep_configs):
                save = functools.partial(population.save_job_files, i)
                with self._job(sweep_config, results[i], "start", save=save) as task_cfg:
                    try:
                        population.check(i, task_cfg)
                        if interleaved:
                            population.open(i, task_cfg)
                            opened.append(i)
                        else:
                            checked.append(i)
                    except Exception as err:  # noqa: BLE001 - the job fails; the sweeper is told
                        _failed(results[i], err)
            for i in checked:
                with self._job(sweep_configs[i], results[i], "resume") as task_cfg:
                    try:
                        population.open(i, task_cfg)
                        opened.append(i)
                    except Exception as err:  # noqa: BLE001
                        _failed(results[i], err)
            if len(opened):
                population.train()
            for i, sweep_config in enumerate(sweep_configs):
                if i not in opened:
                    with self._job(sweep_config, results[i], "end"):
                        pass
                    continue
                with self._job(sweep_config, results[i], "end"):
                    try:
                        results[i].return_value = population.close(i)
                        results[i].status = JobStatus.COMPLETED
                    except Exception as err:  # noqa: BLE001
                        _failed(results[i], err)
        finally:
            population.release()
        return results

    @contextmanager
    def _job(self, sweep_config: DictConfig, result: JobReturn, phase: Literal["start", "resume", "end"],
             save: Callable[..., None] | None = None) -> Iterator[DictConfig]:
        """The job's Hydra context, as `hydra.core.utils.run_job` sets it up: its output dir and saved
        configs (by `save(folder, {name: config}, now=…)`, `now` where a callback acts as a job starts)
        and the `on_job_start` callbacks when it starts; its context and logging again to resume it; the
        `on_job_end` callbacks when it ends."""
        assert self.hydra_context is not None
        previous = HydraConfig.instance().cfg
        start = phase == "start"
        if start:
            HydraConfig.instance().set_config(sweep_config)  # for resolving the job's output dir
            output_dir = os.path.join(str(sweep_config.hydra.sweep.dir), str(sweep_config.hydra.sweep.subdir))
            # `set_config` made a read-only copy of Hydra's node: the job's record, and its context again
            # when it closes (run_job deep-copies it once more; nothing can change it). The output dir
            # goes into both, as run_job's second `set_config` would copy it (a copy less per job).
            result.hydra_cfg = HydraConfig.instance().cfg
            for runtime in (sweep_config.hydra.runtime, result.hydra_cfg.hydra.runtime):
                with read_write(runtime), open_dict(runtime):
                    runtime.output_dir = os.path.abspath(output_dir)
        else:  # every job's context was opened ("start") before it is resumed or closed
            HydraConfig.instance().cfg = result.hydra_cfg
            if phase == "resume":  # what the member logs as it opens goes to the job's log file
                configure_log(sweep_config.hydra.job_logging, sweep_config.hydra.verbose)
        # The job's config is the sweep config without Hydra's node, with its flags, as run_job makes it
        # (a deep copy, less that node): copied without the node, which is half of it.
        task_cfg = OmegaConf.masked_copy(sweep_config, [str(k) for k in sweep_config if k != "hydra"]) \
            if start else result.cfg if phase == "resume" else sweep_config
        if start:
            if OmegaConf.is_struct(sweep_config):
                OmegaConf.set_struct(task_cfg, True)
            if OmegaConf.is_readonly(sweep_config):
                OmegaConf.set_readonly(task_cfg, True)
        try:
            if start:
                Path(str(sweep_config.hydra.runtime.output_dir)).mkdir(parents=True, exist_ok=True)
                result.cfg = task_cfg
                result.overrides = list(sweep_config.hydra.overrides.task)
                result.working_dir = os.getcwd()
                result.task_name = str(sweep_config.hydra.job.name)
                configure_log(sweep_config.hydra.job_logging, sweep_config.hydra.verbose)
                if sweep_config.hydra.output_subdir is not None:
                    folder = Path(str(sweep_config.hydra.runtime.output_dir)) / str(sweep_config.hydra.output_subdir)
                    configs = {"config.yaml": task_cfg, "hydra.yaml": result.hydra_cfg,
                               "overrides.yaml": sweep_config.hydra.overrides.task}
                    assert save is not None, "a job's start saves its configs"
                    # As run_job does, the files are on disk before a callback that acts as the job starts.
                    save(folder, configs, now=self.watches_job_start)
                self.hydra_context.callbacks.on_job_start(config=sweep_config, task_function=self.task_function)
            yield task_cfg
            if phase == "end":
                self.hydra_context.callbacks.on_job_end(config=sweep_config, job_return=result)
        finally:
            HydraConfig.instance().cfg = previous


def _watches_job_start(callbacks: Any) -> bool:
    """Whether one of the sweep's Hydra callbacks acts as a job starts (and may read its saved configs)."""
    from hydra.experimental.callback import Callback

    registered = getattr(callbacks, "callbacks", None)  # Hydra's list of them; unknown: assume one does
    return registered is None or any(type(c).on_job_start is not Callback.on_job_start for c in registered)


def _failed(result: JobReturn, error: BaseException) -> None:
    result.return_value = in_one_sentence(error, in_sweep=True)  # as a job run alone reports it
    result.status = JobStatus.FAILED

