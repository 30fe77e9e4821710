"""Train several sweep jobs of one shape as one batched model, each still its own MLflow run.

The population launcher (`hydra/launcher=population`) groups a sweep's jobs by `population_key`, then
for each group of two or more: `Population.open(i, cfg)` for every job inside that job's Hydra context
(the run is recorded as a child of the sweep, with the job's overrides), `Population.train()` once, and
`Population.close(i)` for every job, again in its context: it returns the job's objective or raises
what ended the member (a non-finite loss, pruning), as `train` does for a run alone.

A member trains as the same config would alone (see `models/population_module.py`): its seed sets its
initial weights, data order and dropout draws; its optimizer options are its parameter group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError, instantiated
from experiments.run_names import run_name_for
from experiments.train import (
    TrainingFailed,
    check_against_the_data,
    network_for_data,
    objective_value,
    open_logger,
    record_run_start,
)
from experiments.validation import validate_config

BUILD_MLP = "experiments.models.mlp.build_mlp"
# Optimizer options every member shares (they choose a kernel, not a trajectory).
_SHARED_OPTIMIZER_KEYS = ("_target_", "_partial_", "fused", "foreach", "capturable", "differentiable")
# The callbacks a population reproduces per member; any other (a user's, SWA, …) needs a run alone.
_KNOWN_CALLBACKS = {"model_checkpoint", "last_checkpoint", "nan_guard", "loss_threshold", "progress_bar",
                    "early_stopping", "learning_curve", "swa"}
SWA = "lightning.pytorch.callbacks.StochasticWeightAveraging"


def population_key(cfg: DictConfig) -> str | None:
    """Jobs with equal keys can train as one population; None: this job trains alone.

    What may differ between members is left out of the key: seed and shuffle seed, optimizer options,
    regularization, dropout, early stopping and loss-threshold settings, tags, the Optuna trial link.
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    model, trainer = plain.get("model") or {}, plain.get("trainer") or {}
    callbacks = plain.get("callbacks") or {}
    scheduler = str((plain.get("scheduler") or {}).get("_target_") or "")
    checkpoint = callbacks.get("model_checkpoint") or {}
    swa = callbacks.get("swa")
    stops = [((callbacks.get("early_stopping") or {}).get("patience")),
             ((callbacks.get("loss_threshold") or {}).get("threshold"))]
    alone = (
        model.get("_target_", BUILD_MLP) != BUILD_MLP
        or plain.get("resume") or plain.get("ckpt_path") or plain.get("skip_finished")
        or plain.get("log_checkpoints", "none") != "none"
        or trainer.get("devices", 1) != 1 or trainer.get("num_nodes", 1) != 1 or trainer.get("strategy")
        or trainer.get("accelerator") == "tpu"
        or trainer.get("gradient_clip_val") is not None or trainer.get("accumulate_grad_batches", 1) != 1
        or scheduler.endswith("ReduceLROnPlateau")  # watches one value; members have several
        or set(callbacks) - _KNOWN_CALLBACKS
        or checkpoint.get("monitor") != "${monitor}"  # a run alone tests the monitor's best epoch
        or not isinstance(plain.get("optimized_metric"), str | list)
        # Weight averaging goes on over every epoch a run trains: members that stop early train alone.
        or (swa is not None and (swa.get("_target_") != SWA or any(stop is not None for stop in stops)))
    )
    if alone:
        return None
    for key in ("seed", "tags", "optuna"):
        plain.pop(key, None)
    plain.pop("regularization", None)
    plain["data"] = {k: v for k, v in plain["data"].items() if k != "shuffle_seed"}
    plain["model"] = {k: v for k, v in model.items() if k != "dropout"}
    plain["optimizer"] = {k: v for k, v in plain["optimizer"].items() if k in _SHARED_OPTIMIZER_KEYS}
    plain["callbacks"] = {
        name: ({k: v for k, v in node.items() if k not in ("patience", "min_delta", "threshold")}
               if isinstance(node, dict) else node)
        for name, node in callbacks.items()
    }
    plain["logger"] = {k: v for k, v in (plain.get("logger") or {}).items() if k not in ("run_name", "run_id")}
    return json.dumps(plain, sort_keys=True, default=str)


@dataclass
class _Member:
    cfg: DictConfig
    logger: Any = None
    net: Any = None
    generator: Any = None
    n_params: int = 0
    error: BaseException | None = None  # what ended it before or during training
    metrics: dict[str, float] = field(default_factory=dict)


class Population:
    """One group of jobs, trained together (see the module's docstring for the order of calls)."""

    def __init__(self, size: int) -> None:
        self.members: list[_Member | None] = [None] * size
        self.datamodule: Any = None
        self.module: Any = None
        self.trainer: Any = None
        self.averaged = False  # stochastic weight averaging: members end with averaged weights
        self.best_member: int | None = None  # the member whose model `logger.log_model=best` logs

    # -- per job, in its Hydra context ------------------------------------------------------------
    def open(self, index: int, cfg: DictConfig) -> None:
        """Check the job's config, build its network under its seed and open its MLflow run."""
        import lightning.pytorch as pl
        import torch

        from experiments.console import quiet_lightning_warnings
        from experiments.models.population_net import generator_like_global

        validate_config(cfg)
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
        member = _Member(cfg, net=net, generator=generator, n_params=int(derived["model.n_params"]))
        member.logger = open_logger(cfg, self.datamodule)
        self.members[index] = member
        if member.logger is not None:
            record_run_start(member.logger, cfg, self.datamodule, derived)
        # Resolved now, in the job's Hydra context (its run dir); training happens outside of it.
        member.cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))

    def close(self, index: int) -> Any:
        """Finish job `index`'s run (test scores, plot, model, status); return its objective or raise
        what ended it."""
        member = self.members[index]
        assert member is not None
        if member.error is not None:
            self._finish_failed(member, member.error)
            raise member.error
        try:
            objective = self._finish(index, member)
        except BaseException as err:
            self._finish_failed(member, err)
            raise
        return objective

    # -- once -------------------------------------------------------------------------------------
    def train(self) -> None:
        """Fit every opened member together; a failure of the whole fit becomes every member's error."""
        opened = [m for m in self.members if m is not None]
        try:
            self._fit(opened)
        except (KeyboardInterrupt, SystemExit):
            for member in opened:
                if member.logger is not None:
                    from experiments.tracking.run import finish_run

                    finish_run(member.logger, "KILLED", "interrupted")
                    member.logger = None
            raise
        except BaseException as err:  # noqa: BLE001 - every member ends with it
            for member in opened:
                member.error = err

    def _fit(self, opened: list[_Member]) -> None:
        import lightning.pytorch as pl

        from experiments.callbacks.member_records import MemberRecords
        from experiments.devices import build_trainer
        from experiments.models.population_module import PopulationModule
        from experiments.models.population_net import PopulationNet
        from experiments.sizing import apply_threads, choose_eval_batch_size, choose_threads, widest_layer
        from experiments.speedups import resume_gc_after_startup

        first = opened[0].cfg
        cfgs = [m.cfg for m in opened]
        net = PopulationNet([m.net for m in opened], [float(c.model.get("dropout") or 0.0) for c in cfgs],
                            [float(c.regularization.get("input_noise", 0.0)) for c in cfgs],
                            [m.generator for m in opened], [int(c.seed) for c in cfgs])
        # The population's compute is its members' together: threads as for a network that size.
        apply_threads(choose_threads(first.threads, sum(m.n_params for m in opened), first.data.batch_size))
        optimizer = OmegaConf.to_container(first.optimizer, resolve=True)
        assert isinstance(optimizer, dict)
        self.module = PopulationModule(
            net, [_member_settings(c) for c in cfgs], **self.datamodule.target.training_settings(),
            optimizer_target=str(optimizer["_target_"]), fused=optimizer.get("fused", False),
            scheduler=OmegaConf.to_container(first.scheduler, resolve=True),  # type: ignore[arg-type]
            monitor=first.monitor, monitor_mode=first.monitor_mode)
        self.datamodule.member_seeds = [int(c.data.shuffle_seed) for c in cfgs]
        self.datamodule.eval_batch_size = choose_eval_batch_size(
            first.data.get("eval_batch_size", "auto"),
            widest_layer(self.datamodule.input_dim, first.model.get("hidden_dims") or []))
        trainer_cfg = OmegaConf.create(OmegaConf.to_container(first.trainer, resolve=True))
        trainer_cfg.enable_checkpointing = False  # members' best weights are kept in memory
        trainer_cfg.default_root_dir = str(first.paths.output_dir)
        links = [dict(c.optuna) if c.get("optuna") and isinstance(c.optimized_metric, str) else None for c in cfgs]
        callbacks: list[pl.Callback] = [MemberRecords([m.logger for m in opened], links, str(first.monitor))]
        if first.callbacks.get("progress_bar") is not None and trainer_cfg.get("enable_progress_bar", True):
            callbacks.append(instantiated(first.callbacks.progress_bar))
        else:
            trainer_cfg.enable_progress_bar = False
        if first.callbacks.get("swa") is not None:
            callbacks.append(instantiated(first.callbacks.swa))
            self.averaged = True
        self.trainer = build_trainer(trainer_cfg, callbacks, False, [])
        print(f"Training {len(opened)} runs as one population ({_describe(first)}).", flush=True)
        resume_gc_after_startup()
        self.trainer.fit(self.module, datamodule=self.datamodule)
        if self.trainer.interrupted:
            raise KeyboardInterrupt
        if self.averaged:  # as a run alone: the averaged weights validated once more, then tested
            self.trainer.validate(self.module, datamodule=self.datamodule, verbose=False)
        else:
            self.module.use_best_weights()
        if self.datamodule.arrays.sizes["test"] > 0 and first.get("test", True):
            self.trainer.test(self.module, datamodule=self.datamodule, verbose=False)
        self.best_member = self.module.best_member()

    def _finish(self, index: int, member: _Member) -> Any:
        from experiments.tracking.run import finish_run, log_trained_model

        state = self.module.states[self.module_index(index)]
        m = self.module_index(index)
        if state.failure is not None:
            raise TrainingFailed(state.failure)
        if state.pruned is not None:
            import optuna

            raise optuna.TrialPruned(state.pruned)
        cfg, logger = member.cfg, member.logger
        metrics = dict(state.history[max(state.history)]) if state.history else {}
        tested = self.module.test_scores[m]
        metrics.update(tested)
        stopping = _early_stopping_summary(self.module.settings[m], state, self.trainer.current_epoch - 1)
        if logger is not None:
            logger.log_metrics({**tested, **stopping}, step=0)
            if cfg.callbacks.get("learning_curve") is not None:
                _log_learning_curve(logger, state.history, self.module.main_metric, cfg.callbacks.learning_curve)
            if _logs_model(cfg.logger.get("log_model", True), m == self.best_member):
                from experiments.tracking.pyfunc_model import TabularModel

                weights_epoch = max(state.history) if self.averaged else max(state.best_epoch, 0)
                log_trained_model(logger, TabularModel(self.datamodule.preparation, self.module.net.members[m]),
                                  self.datamodule.example_rows(), weights_epoch)
            finish_run(logger, "FINISHED")
        metrics["model/n_params"] = float(member.n_params)
        run = f" (run {logger.run_id})" if logger is not None else ""
        print(f"  {run_name_for(cfg)}: {cfg.monitor}_best={metrics.get(f'{cfg.monitor}_best', float('nan')):.4g}"
              f"{run}", flush=True)
        return objective_value(metrics, cfg)

    def module_index(self, index: int) -> int:
        """Position of job `index` among the members that trained (jobs refused at `open` did not)."""
        return sum(1 for m in self.members[:index] if m is not None)

    @staticmethod
    def _finish_failed(member: _Member, err: BaseException) -> None:
        if member.logger is None:
            return
        from experiments.optuna_trial import close_pruned_run, is_trial_pruned
        from experiments.tracking.run import finish_run

        if is_trial_pruned(err):
            close_pruned_run(member.logger, err)
        else:
            reason = str(err) if isinstance(err, TrainingFailed | UserError) else f"{type(err).__name__}: {err}"
            finish_run(member.logger, "FAILED", reason)
        member.logger = None


def _logs_model(setting: Any, is_best: bool) -> bool:
    """`logger.log_model`: true (every member), false (none), or best (the population's best member)."""
    return is_best if setting == "best" else bool(setting)


def _member_settings(cfg: DictConfig) -> Any:
    from experiments.models.optim import optimizer_arguments
    from experiments.models.population_module import MemberSettings

    options = OmegaConf.to_container(cfg.optimizer, resolve=True)
    assert isinstance(options, dict)
    group = {k: v for k, v in optimizer_arguments(options).items() if k not in _SHARED_OPTIMIZER_KEYS}
    reg = cfg.regularization
    stopping = cfg.callbacks.get("early_stopping") or {}
    threshold = cfg.callbacks.get("loss_threshold") or {}
    return MemberSettings(
        optimizer=group, l1=float(reg.get("l1", 0.0)), l2=float(reg.get("l2", 0.0)),
        label_smoothing=float(reg.get("label_smoothing", 0.0)), max_norm=float(reg.get("max_norm", 0.0)),
        patience=None if stopping.get("patience") is None else int(stopping.patience),
        min_delta=float(stopping.get("min_delta", 0.0)),
        loss_threshold=None if threshold.get("threshold") is None else float(threshold.threshold),
        threshold_monitor=str(threshold.get("monitor", "train/loss")),
    )


def _early_stopping_summary(settings: Any, state: Any, last_epoch: int) -> dict[str, float]:
    """The one-off values a run alone with early stopping logs (see callbacks/early_stopping.py)."""
    if settings.patience is None:
        return {}
    return {"early_stopping/best_epoch": float(state.es_best_epoch),
            "early_stopping/stopped_epoch": float(state.stopped_epoch or last_epoch),
            "early_stopping/restored": 1.0}


def _log_learning_curve(logger: Any, history: dict[int, dict[str, float]], metric: str, node: Any) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from experiments.callbacks.learning_curve import plot_learning_curve

    series: dict[str, dict[int, float]] = {}
    for epoch, values in history.items():
        for key in ("train/loss", "val/loss", f"train/{metric}", f"val/{metric}"):
            if key in values:
                series.setdefault(key, {})[epoch] = values[key]
    folder = Path(tempfile.mkdtemp(prefix="learning-curve-"))
    try:
        path = plot_learning_curve(series, metric, folder / str(node.get("filename", "learning_curve.png")))
        logger.experiment.log_artifact(logger.run_id, str(path), str(node.get("artifact_path", "plots")))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _describe(cfg: DictConfig) -> str:
    dims = "x".join(str(d) for d in cfg.model.get("hidden_dims") or []) or "linear"
    return f"{cfg.data.dataset}, {cfg.model.get('activation', 'relu')} {dims}, batch {cfg.data.batch_size}"
