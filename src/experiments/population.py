"""Train several sweep jobs of one shape as one batched model, each still its own MLflow run.

The population launcher (`hydra/launcher=population`) groups a sweep's jobs by `population_key`, then
for each group of two or more: `Population.check(i, cfg)` for every job as it starts, then
`Population.open(i, cfg)` for every job, each inside that job's Hydra context (the run is recorded as a
child of the sweep, with the job's overrides), `Population.train()` once, and
`Population.close(i)` for every job, again in its context: it returns the job's objective or raises
what ended the member (a non-finite loss, pruning), as `train` does for a run alone.

A member trains as the same config would alone (see `models/population_module.py`): its seed sets its
initial weights, data order and dropout draws; its optimizer options are those of its parameter group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, read_write
from omegaconf.errors import OmegaConfBaseException

from experiments.errors import instantiated
from experiments.population_grouping import population_optimizer
from experiments.population_member import (
    Member,
    curve_series,
    finish,
    finish_failed,
    logs_model,
    member_settings,
    plots_curve,
)
from experiments.population_workers import PopulationWorkers
from experiments.population_writer import save_yaml_files, wait_for
from experiments.timing import mark, marked
from experiments.tracking.run_record import write_metrics, write_run_record
from experiments.train import (
    check_against_the_data,
    network_for_data,
    new_run_record,
    open_logger,
    record_run_start,
)
from experiments.validation import validate_config


class Population:
    """One group of jobs, trained together (see the module's docstring for the order of calls).

    `memory_bytes` bounds what one population may take (None: what the machine has free); a group that
    would need more is trained in chunks, one after another, each a population of its own. `workers`: the
    worker processes it shares with the other populations of its launch (None: its own, stopped by
    `release`).
    """

    def __init__(self, size: int, memory_bytes: int | None = None, workers: PopulationWorkers | None = None) -> None:
        self.members: list[Member | None] = [None] * size
        self.memory_bytes = memory_bytes
        self.datamodule: Any = None
        self._own_workers = workers is None
        self.workers = PopulationWorkers(size) if workers is None else workers
        self.plots: Any = None  # a `plot_worker.PlotWorker` drawing the members' learning curves, or None
        # A `population_writer.PopulationWriter` writing the jobs' files and the members' opening records
        # while the next members open, or None; and, per job, what it is writing (its future, and the same
        # writing done here should the worker die).
        self.writer: Any = self.workers.writer()
        self.pending: dict[int, list[tuple[Future, Callable[[], None]]]] = {}

    # -- per job, in its Hydra context ------------------------------------------------------------
    def save_job_files(self, index: int, folder: Path, configs: dict[str, Any], now: bool = False) -> None:
        """Save job `index`'s configs (name → config) as YAML in `folder`, as `OmegaConf.save` does: by
        the population writer (waited for as the job closes), or here and `now`."""
        if self.writer is None or now:
            folder.mkdir(parents=True, exist_ok=True)
            for name, config in configs.items():
                OmegaConf.save(config, folder / name)
            return
        values = {name: OmegaConf.to_container(config, enum_to_str=True) for name, config in configs.items()}
        self.pending.setdefault(index, []).append(
            (self.writer.submit_files(folder, values), functools.partial(save_yaml_files, folder, values)))

    def check(self, index: int, cfg: DictConfig) -> None:
        """Resolve and check the job's config (raising what is wrong with it), in its Hydra context."""
        check_job(cfg)

    def open(self, index: int, cfg: DictConfig) -> None:
        """Build the member's network under its seed and open its MLflow run, in its job's Hydra context
        (its config checked by `check`)."""
        mark("member_open_start")
        import lightning.pytorch as pl
        import torch

        from experiments.console import quiet_lightning_warnings
        from experiments.models.population_net import generator_like_global

        quiet_lightning_warnings()
        if self.datamodule is None:
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            self.datamodule = instantiated(cfg.data, _convert_="all")
        check_against_the_data(cfg, self.datamodule)
        with torch.random.fork_rng(devices=[]):
            # As a run alone: seeded, then its network; the global generator's state after that is
            # where the member's dropout and noise draws start.
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            net, derived = network_for_data(cfg, self.datamodule)
            generator = generator_like_global()
        member = Member(cfg, net=net, generator=generator, n_params=int(derived["model.n_params"]))
        member.logger = open_logger(cfg, self.datamodule)
        self.members[index] = member
        if member.logger is not None:
            with marked("member_run"):
                member.logger.experiment  # noqa: B018 - opens the run, timed apart from what it records
            with marked("member_record"):
                self._record(index, member, derived)
            self._hand_off_metrics(member)
        mark("member_open_end")

    def close(self, index: int) -> Any:
        """Finish job `index`'s run (test scores, plot, model, status); return its objective or raise
        what ended it."""
        member = self.members[index]
        assert member is not None
        if member.error is not None:
            finish_failed(member, member.error)
            raise member.error
        mark("member_close_start")
        try:
            for written, here in self.pending.pop(index, []):
                wait_for(written, here)
            objective = finish(member, self.datamodule, self.plots, self.writer)
        except BaseException as err:
            finish_failed(member, err)
            raise
        mark("member_close_end")
        return objective

    # -- once -------------------------------------------------------------------------------------
    def train(self) -> None:
        """Fit every opened member, in as many chunks as memory asks for; a failure of a chunk's fit
        becomes each of its members' error."""
        opened = [m for m in self.members if m is not None]
        # Started now (if not yet), its imports overlap training; it draws while the runs are closed.
        self.plots = self.workers.plots() if any(plots_curve(m) for m in opened) else None
        chunks = self._chunks(opened)
        if len(chunks) > 1:
            print(f"{len(opened)} runs of one shape: more than fits in memory at once, trained as "
                  f"{len(chunks)} populations of up to {len(chunks[0])}.", flush=True)
        for chunk in chunks:
            try:
                self._fit(chunk)
            except (KeyboardInterrupt, SystemExit):
                for member in opened:
                    if member.logger is not None:
                        from experiments.tracking.run import finish_run

                        finish_run(member.logger, "KILLED", "interrupted")
                        member.logger = None
                raise
            except BaseException as err:  # noqa: BLE001 - every member of the chunk ends with it
                for member in chunk:
                    member.error = err
        if self.plots is not None:
            from experiments.models.tasks import main_metric

            metric = main_metric(self.datamodule.task)
            for member in opened:
                state = member.state
                if plots_curve(member) and member.error is None and state.failure is None and state.pruned is None:
                    filename = str(member.cfg.callbacks.learning_curve.get("filename", "learning_curve.png"))
                    self.plots.submit(id(member), curve_series(state.history, metric), metric, filename)

    def release(self) -> None:
        """Once every member is closed: stop the workers, if they are the population's own."""
        self.plots = self.writer = None
        if self._own_workers:
            self.workers.close()

    def _record(self, index: int, member: Member, derived: dict[str, Any]) -> None:
        """The member's opening record: built here, in its job's context, and written by the population
        writer (waited for as its run closes), or here and now."""
        cfg, logger = member.cfg, member.logger
        if self.writer is None:
            record_run_start(logger, cfg, self.datamodule, derived)
            return
        record = new_run_record(logger, cfg, self.datamodule, derived)
        self.pending.setdefault(index, []).append(
            (self.writer.submit_record(logger.experiment.tracking_uri, logger.run_id, record),
             functools.partial(write_run_record, logger.experiment, logger.run_id, record)))

    def _hand_off_metrics(self, member: Member) -> None:
        """The member's epoch metrics written by the population writer while the population trains
        (waited for before its run closes), unless every member logs its model: MLflow then reads back
        every metric's history written before it to link those of the model's epoch (`logger.log_model=best`
        costs that once, for the best member)."""
        logger = member.logger
        if self.writer is None or logs_model(member.cfg, is_best=False):  # every member logs its model
            return
        writer, uri, run_id = self.writer, logger.experiment.tracking_uri, logger.run_id

        def hand_off(metrics: list[Any]) -> Callable[[], None]:
            written = writer.submit_metrics(uri, run_id, metrics)
            if written.done() and isinstance(written.exception(), BrokenProcessPool):
                # Its worker died: these are written as the run closes, the next buffered as a member's are.
                from experiments.callbacks.member_records import MOST_WAIT_S

                logger.hand_off, logger.flush_every_s = None, MOST_WAIT_S
            return functools.partial(wait_for, written, functools.partial(write_metrics, logger.experiment, run_id, metrics))

        logger.hand_off = hand_off

    def _chunks(self, opened: list[Member]) -> list[list[Member]]:
        from experiments.sizing import available_memory_bytes, member_memory_bytes

        first = opened[0]
        hidden = [int(width) for width in first.cfg.model.get("hidden_dims") or []]
        per_member = member_memory_bytes(first.n_params, self.datamodule.input_dim, hidden,
                                         int(first.cfg.data.batch_size), self.datamodule.arrays.sizes)
        device = "cuda" if str(first.cfg.trainer.get("accelerator")) in ("gpu", "cuda") else "cpu"
        budget = self.memory_bytes if self.memory_bytes is not None else available_memory_bytes(device)
        size = max(1, min(len(opened), budget // max(per_member, 1)))
        return [opened[start : start + size] for start in range(0, len(opened), size)]

    def _fit(self, chunk: list[Member]) -> None:
        """Train one chunk as a population, test it, and hand each member its results."""
        from experiments.models.population_module import optimizer_groups
        from experiments.speedups import resume_gc_after_startup

        # Members of one optimizer group side by side (each group's parameters are stacked tensors).
        settings = [member_settings(m.cfg) for m in chunk]
        groups = optimizer_groups(settings)
        order = sorted(range(len(chunk)), key=groups.__getitem__)
        chunk, settings, groups = [chunk[m] for m in order], [settings[m] for m in order], sorted(groups)
        first = chunk[0].cfg
        module = self._module(chunk, settings, groups)
        trainer, averaged = self._trainer(chunk)
        runs = f"{len(chunk)} runs as one population" if len(chunk) > 1 else "1 run as a population of one"
        print(f"Training {runs} ({_describe(first)}).", flush=True)
        resume_gc_after_startup()
        mark("population_fit_start")
        trainer.fit(module, datamodule=self.datamodule)
        if trainer.interrupted:
            raise KeyboardInterrupt
        if averaged:  # as a run alone: the averaged weights validated once more, then tested
            trainer.validate(module, datamodule=self.datamodule, verbose=False)
        else:
            module.use_best_weights()
        if self.datamodule.arrays.sizes["test"] > 0 and first.get("test", True):
            trainer.test(module, datamodule=self.datamodule, verbose=False)
        mark("population_fit_end")
        # The rest of the members' epoch metrics: written by the writer while the runs close if it has
        # caught up (else each run's close writes its own, as the writer is the slower of the two).
        hand_off = self.writer is not None and self.writer.idle()
        for member in chunk:
            if member.logger is not None and member.logger.hand_off is not None:
                if hand_off:
                    member.logger.flush()
                else:
                    member.logger.hand_off = None
        best = module.best_member()
        module.net.export_members()
        for m, member in enumerate(chunk):
            member.state, member.settings, member.tested = module.states[m], module.settings[m], module.test_scores[m]
            member.averaged, member.is_best, member.last_epoch = averaged, m == best, trainer.current_epoch - 1
            member.net = module.net.members[m]
        self.datamodule.member_seeds = []

    def _module(self, chunk: list[Member], settings: list[Any], groups: list[int]) -> Any:
        """The chunk's PopulationModule (members' `settings`, their optimizer `groups` contiguous), with
        threads for its size and each member's batches."""
        from experiments.models.population_module import PopulationModule
        from experiments.models.population_net import PopulationNet
        from experiments.sizing import apply_threads, choose_eval_batch_size, choose_threads, widest_layer

        first, cfgs = chunk[0].cfg, [m.cfg for m in chunk]
        # The population's compute is its members' together: threads as for a network that size.
        apply_threads(choose_threads(first.threads, sum(m.n_params for m in chunk), first.data.batch_size))
        net = PopulationNet([m.net for m in chunk], [float(c.model.get("dropout") or 0.0) for c in cfgs],
                            [float(c.regularization.get("input_noise", 0.0)) for c in cfgs],
                            [m.generator for m in chunk], [int(c.seed) for c in cfgs], groups)
        optimizer = OmegaConf.to_container(first.optimizer, resolve=True)
        assert isinstance(optimizer, dict)
        self.datamodule.member_seeds = [int(c.data.shuffle_seed) for c in cfgs]
        self.datamodule.eval_batch_size = choose_eval_batch_size(
            first.data.get("eval_batch_size", "auto"),
            widest_layer(self.datamodule.input_dim, first.model.get("hidden_dims") or []))
        return PopulationModule(
            net, settings, **self.datamodule.target.training_settings(),
            optimizer_target=population_optimizer(optimizer)[0], fused=optimizer.get("fused", False),
            scheduler=OmegaConf.to_container(first.scheduler, resolve=True),  # type: ignore[arg-type]
            monitor=first.monitor, monitor_mode=first.monitor_mode)

    def _trainer(self, chunk: list[Member]) -> tuple[Any, bool]:
        """Lightning's Trainer as the members' trainer config says, without checkpoint files, with each
        member's records and the progress bar; and whether it averages weights (SWA)."""
        import lightning.pytorch as pl

        from experiments.callbacks.member_records import MemberRecords
        from experiments.devices import build_trainer

        first, cfgs = chunk[0].cfg, [m.cfg for m in chunk]
        trainer_cfg = OmegaConf.create(OmegaConf.to_container(first.trainer, resolve=True))
        trainer_cfg.enable_checkpointing = False  # members' best weights are kept in memory
        trainer_cfg.default_root_dir = str(first.paths.output_dir)
        links = [dict(c.optuna) if c.get("optuna") and isinstance(c.optimized_metric, str) else None for c in cfgs]
        callbacks: list[pl.Callback] = [MemberRecords([m.logger for m in chunk], links, str(first.monitor))]
        if first.callbacks.get("progress_bar") is not None and trainer_cfg.get("enable_progress_bar", True):
            callbacks.append(instantiated(first.callbacks.progress_bar))
        else:
            trainer_cfg.enable_progress_bar = False
        averaged = first.callbacks.get("swa") is not None
        if averaged:
            callbacks.append(instantiated(first.callbacks.swa))
        return build_trainer(trainer_cfg, callbacks, False, []), averaged


def check_job(cfg: DictConfig) -> None:
    """Resolve a job's config in place and check it (raising what is wrong with it), in its Hydra context.
    Resolved once, here in the job's context (its run dir): training and closing happen outside of it,
    and every later reading (params, config.yaml, the check) is then a plain walk. A value that cannot be
    resolved is left for the check, which says what is wrong."""
    with read_write(cfg):
        try:
            OmegaConf.resolve(cfg)
        except OmegaConfBaseException:
            pass
    validate_config(cfg)


def _describe(cfg: DictConfig) -> str:
    dims = "x".join(str(d) for d in cfg.model.get("hidden_dims") or []) or "linear"
    return f"{cfg.data.dataset}, {cfg.model.get('activation', 'relu')} {dims}, batch {cfg.data.batch_size}"
