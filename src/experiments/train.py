"""Hydra entry point and the pure `train(cfg) -> metrics` it wraps (tests call `train` directly)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from experiments.errors import TrainingFailed, UserError, instantiated
from experiments.paths import config_dir, register_resolvers
from experiments.run_names import run_name_for
from experiments.timing import mark
from experiments.validation import check_monitor, validate_config

register_resolvers()


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, validate and test one model as `cfg` describes; return the final metrics."""
    from experiments.resume import prepare_continuation

    cfg = prepare_continuation(cfg)  # resume=…: the run's recorded config, its checkpoint and run id
    validate_config(cfg)  # a config error is reported before torch is imported

    import lightning.pytorch as pl

    from experiments.checkpoints import checked_checkpoint, log_checkpoints
    from experiments.console import quiet_lightning_warnings
    from experiments.devices import check_hardware
    from experiments.speedups import resume_gc_after_startup
    from experiments.tracking.run import finish_run, log_trained_model

    quiet_lightning_warnings()
    check_hardware(cfg.trainer)  # a missing GPU/TPU is reported before the MLflow store is touched
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiated(cfg.data, _convert_="all")
    check_against_the_data(cfg, datamodule)  # still no run recorded
    net, derived = network_for_data(cfg, datamodule)
    module = _training_module(cfg, net, datamodule)
    ckpt_path = checked_checkpoint(cfg.get("ckpt_path"), module)  # weights-only, and fits this model
    logger = open_logger(cfg, datamodule)
    trainer = _trainer(cfg, _callbacks(cfg), logger, datamodule)
    if trainer.is_global_zero:
        print(datamodule.report(), flush=True)  # what became of each column, before any epoch
        if logger is not None:
            record_run_start(logger, cfg, datamodule, derived)

    resume_gc_after_startup()
    with _run_outcome(logger, trainer, cfg):
        mark("fit_start")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
        mark("fit_end")
        if trainer.interrupted:
            raise KeyboardInterrupt
        if _averages_weights(trainer):
            # Stochastic weight averaging ends with weights no epoch validated: score them once more,
            # so the run's final val/* (one step past the last epoch) describe the model it ends with.
            trainer.validate(module, datamodule=datamodule, verbose=False)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k != "epoch"}
        weights_epoch = _test(trainer, module, datamodule, cfg, metrics)
        mark("test_end")
        if logger is not None and trainer.is_global_zero:
            if cfg.logger.get("log_model", True):
                from experiments.tracking.pyfunc_model import TabularModel

                log_trained_model(logger, TabularModel(datamodule.preparation, module.net),
                                  datamodule.example_rows(), weights_epoch)
            log_checkpoints(logger, trainer.checkpoint_callbacks, cfg.get("log_checkpoints", "none"))
            finish_run(logger, "FINISHED")
        mark("run_closed")
    metrics["model/n_params"] = float(derived["model.n_params"])
    if trainer.is_global_zero:
        from experiments.summary import print_summary

        print_summary(metrics, logger, run_name_for(cfg))
    mark("train_returned")
    return metrics


def check_against_the_data(cfg: DictConfig, datamodule: Any) -> None:
    """What only the data can settle: the monitor (by task), the input width; and the optimizer and
    scheduler against torch — refused before any run is recorded, not mid-fit."""
    from experiments.models.optim import check_scheduler, optimizer_factory

    check_monitor(cfg.monitor, datamodule.task)
    optimizer_factory(OmegaConf.to_container(cfg.optimizer, resolve=True))  # type: ignore[arg-type]
    check_scheduler(OmegaConf.to_container(cfg.scheduler, resolve=True))  # type: ignore[arg-type]
    if cfg.model.input_dim is not None and cfg.model.input_dim != datamodule.input_dim:
        raise UserError(
            f"model.input_dim={cfg.model.input_dim} disagrees with the data, which has {datamodule.input_dim} "
            "features; leave model.input_dim=null to take it from the data."
        )


def network_for_data(cfg: DictConfig, datamodule: Any) -> tuple[Any, dict[str, Any]]:
    """The network `cfg.model` names (by `_target_`; the MLP in every preset) for the data's width and
    outputs, with the thread count its size calls for."""
    from experiments.models.mlp import count_parameters, network_from_config
    from experiments.sizing import apply_threads, choose_threads

    net = network_from_config(cfg.model, datamodule.input_dim, datamodule.num_outputs)
    n_params = count_parameters(net)
    threads = choose_threads(cfg.threads, n_params, cfg.data.batch_size)
    apply_threads(threads)
    return net, {"model.n_params": n_params, "runtime.threads": threads}


def _callbacks(cfg: DictConfig) -> list[Any]:
    """The configured callbacks, plus what every run needs: the NaN stop, the Optuna link of a sweep's
    trial, the run record that resume reads and, on several CPU ranks, their process group's closing."""
    from experiments.callbacks.nan_guard import NanGuard
    from experiments.callbacks.process_group import ProcessGroupCloser
    from experiments.checkpoints import RunStateCheckpoint
    from experiments.optuna_trial import pruning_callbacks

    callbacks = [instantiated(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not any(isinstance(c, NanGuard) for c in callbacks):
        callbacks.append(NanGuard())
    callbacks += pruning_callbacks(cfg)  # a job of an Optuna sweep: report the monitor, maybe get pruned
    callbacks.append(RunStateCheckpoint(OmegaConf.to_yaml(cfg, resolve=True)))  # RNG + run record, for resume
    callbacks.append(ProcessGroupCloser())
    return callbacks


def open_logger(cfg: DictConfig, datamodule: Any) -> Any:
    """The run's MLflow logger (a child of its sweep's parent run in a sweep), or None."""
    if cfg.logger is None or not cfg.logger.get("enabled", True):
        return None
    from experiments.tracking.run import build_logger
    from experiments.tracking.sweep_job import join_sweep_parent

    tags = {"dataset": datamodule.dataset_name, "task": datamodule.task, **{k: str(v) for k, v in cfg.tags.items()}}
    tags.update(join_sweep_parent(cfg))  # in a sweep: a child of its parent run, in the parent's store
    return build_logger(cfg, run_name_for(cfg), tags)


def _trainer(cfg: DictConfig, callbacks: list[Any], logger: Any, datamodule: Any) -> Any:
    """Lightning's Trainer as `cfg.trainer` says, with throttled checkpoint writes, and evaluation batches
    sized to the network."""
    from experiments.checkpoint_io import ThrottledCheckpointIO
    from experiments.devices import build_trainer
    from experiments.sizing import choose_eval_batch_size, widest_layer

    trainer_cfg = OmegaConf.create(OmegaConf.to_container(cfg.trainer, resolve=True))
    callbacks = _one_progress_switch(trainer_cfg, callbacks)
    throttle = cfg.trainer.get("accelerator") != "tpu"  # XLA saves through its own checkpoint IO
    plugins = [ThrottledCheckpointIO(float(cfg.get("checkpoint_every_s", 0)))] if throttle else []
    trainer = build_trainer(trainer_cfg, callbacks, logger or False, plugins)  # hardware + launch checks
    datamodule.eval_batch_size = choose_eval_batch_size(cfg.data.get("eval_batch_size", "auto"),
                                                        widest_layer(datamodule.input_dim, cfg.model.get("hidden_dims") or []))
    return trainer


@contextmanager
def _run_outcome(logger: Any, trainer: Any, cfg: DictConfig) -> Iterator[None]:
    """The MLflow run ends with what ended the training: FAILED with the reason, KILLED when interrupted
    (with the resume command printed) or pruned, and the error re-raised for the caller."""
    from experiments.callbacks.nan_guard import NonFiniteLossError
    from experiments.optuna_trial import close_pruned_run, is_trial_pruned
    from experiments.tracking.run import close_failed, finish_run

    closes = logger is not None and trainer.is_global_zero
    try:
        yield
    except NonFiniteLossError as err:
        if closes:
            finish_run(logger, "FAILED", str(err))
        raise TrainingFailed(str(err)) from None
    except (KeyboardInterrupt, SystemExit) as err:
        if closes:
            finish_run(logger, "KILLED", "interrupted")
        from experiments.resume import exit_for_interrupt, report_interruption

        if trainer.is_global_zero:
            report_interruption(logger, trainer.checkpoint_callbacks, cfg)
        raise exit_for_interrupt(err) from None
    except BaseException as err:
        if closes:
            if is_trial_pruned(err):  # KILLED + optuna.state=PRUNED; re-raised so the sweeper records PRUNED
                close_pruned_run(logger, err)
            else:
                close_failed(logger, err, f"{type(err).__name__}: {err}")
        raise



def _training_module(cfg: DictConfig, net: Any, datamodule: Any) -> Any:
    """The LightningModule around `net`: loss, regularization, metrics and optimizer as configured."""
    from experiments.models.module import ExperimentModule

    return ExperimentModule(
        net,
        **datamodule.target.training_settings(),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),  # type: ignore[arg-type]
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),  # type: ignore[arg-type]
        regularization=OmegaConf.to_container(cfg.regularization, resolve=True),  # type: ignore[arg-type]
        monitor=cfg.monitor,
        monitor_mode=cfg.monitor_mode,
    )


def _one_progress_switch(trainer_cfg: DictConfig, callbacks: list[Any]) -> list[Any]:
    """Either switch alone turns the progress bar off: Lightning refuses `enable_progress_bar=false` while a
    bar is among the callbacks, and adds its own bar when `callbacks.progress_bar=null` took ours away."""
    from lightning.pytorch.callbacks import ProgressBar

    if not trainer_cfg.get("enable_progress_bar", True):
        return [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not any(isinstance(c, ProgressBar) for c in callbacks):
        trainer_cfg.enable_progress_bar = False
    return callbacks


def record_run_start(logger: Any, cfg: DictConfig, datamodule: Any, derived: dict[str, Any]) -> None:
    """A continued run records its continuation; a new one its params, tags, config and dataset."""
    if cfg.get("resume"):
        from experiments.resume import record_continuation

        record_continuation(logger, cfg, datamodule.fingerprint)
        return
    from experiments.tracking.run_record import write_run_record

    write_run_record(logger.experiment, logger.run_id, new_run_record(logger, cfg, datamodule, derived))


def new_run_record(logger: Any, cfg: DictConfig, datamodule: Any, derived: dict[str, Any]) -> Any:
    """What a new run records as it opens (a `tracking.run_record.RunRecord`), read in the job's Hydra context."""
    from experiments.tracking.dataset import dataset_input
    from experiments.tracking.run_record import run_record

    derived = {**derived, "model.input_dim_resolved": datamodule.input_dim,
               **{f"data.{k}": v for k, v in datamodule.describe().items()}}
    existing = logger.experiment.get_run(logger.run_id).data.params if cfg.logger.get("run_id") else None
    return run_record(cfg, derived, _hydra_overrides(),
                      {"data.fingerprint": datamodule.fingerprint, "run_dir": str(cfg.paths.run_dir)},
                      dataset_input(datamodule, dict(cfg.data.get("options") or {})), datamodule.report() + "\n",
                      existing)


def _test(trainer: Any, module: Any, datamodule: Any, cfg: DictConfig, metrics: dict[str, float]) -> int:
    """Score the best checkpoint on the test split (when there is one and `test` is on), adding the
    `test/*` scores to `metrics`; return the epoch whose weights the module now holds."""
    from experiments.models.module import tested_metrics

    weights_epoch = _fitted_weights_epoch(trainer, cfg.monitor)
    if datamodule.arrays.sizes["test"] == 0 or not cfg.get("test", True):
        return weights_epoch
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if _averages_weights(trainer):  # the averaged weights exist only in the module, after fitting
        best = ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics.update(tested_metrics(trainer))
    if not best:
        return weights_epoch
    # Testing loaded the best checkpoint. Its epoch as published by the module: under `ddp_spawn` the
    # module here never trained (only weights and callback metrics come back).
    return int(metrics.get(f"{cfg.monitor}_best_epoch", module.best_epoch))


def _averages_weights(trainer: Any) -> bool:
    from lightning.pytorch.callbacks import StochasticWeightAveraging

    return any(isinstance(callback, StochasticWeightAveraging) for callback in trainer.callbacks)


def _fitted_weights_epoch(trainer: Any, monitor: str) -> int:
    """The epoch whose weights the module holds as fitting ends: early stopping's restored one, else the
    last validated one. A `ddp_spawn` launcher never trained; it reads the callback metrics that
    Lightning brings back from the rank-0 worker (`epoch`, `<monitor>_best_epoch`)."""
    from experiments.callbacks.early_stopping import EarlyStopping

    metrics = trainer.callback_metrics
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.enabled and callback.restore_best_weights:
            if callback.restored_epoch is not None:
                return callback.restored_epoch
            if callback.monitor == monitor and f"{monitor}_best_epoch" in metrics:
                return int(metrics[f"{monitor}_best_epoch"])
    return int(metrics["epoch"]) if "epoch" in metrics else trainer.current_epoch - 1


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from experiments.tracking.sweep_job import finished_objective, objective_value

    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    if multirun:
        reused = finished_objective(cfg)  # skip_finished=true: this point already has a FINISHED run
        if reused is not None:
            return reused
    try:
        metrics = train(cfg)
    except Exception as raised:
        from experiments.tracking.server import TrackingServerUnavailable, in_one_sentence

        err = in_one_sentence(raised, in_sweep=multirun)  # a server that went away: not MLflow's traceback
        if not isinstance(err, (UserError, TrainingFailed, TrackingServerUnavailable)):
            raise
        if multirun and not getattr(err, "stops_sweep", False):  # the sweeper records a failed job, goes on
            if err is raised:
                raise
            raise err from None
        if isinstance(err, UserError) and not multirun:
            _discard_unused_run_dir(cfg)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, UserError) else 1)
    return objective_value(metrics, cfg)


def _discard_unused_run_dir(cfg: DictConfig) -> None:
    """A run refused before it started leaves no folder: Hydra's one for it holds only its `.hydra` record.
    Folders emptied by that go too, up to (not including) `paths.output_dir`."""
    import shutil
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if not run_dir.is_dir() or {entry.name for entry in run_dir.iterdir()} - {".hydra"}:
        return
    shutil.rmtree(run_dir)
    configured = OmegaConf.select(cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False)
    output_dir = Path(str(configured or run_dir.parent)).resolve()
    for folder in run_dir.resolve().parents:
        if folder == output_dir or output_dir not in folder.parents or any(folder.iterdir()):
            break
        folder.rmdir()
