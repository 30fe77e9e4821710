"""One training run's MLflow record: open it, describe it, attach the model, close it with a status."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from experiments.tracking.logger import EpochMLFlowLogger
from experiments.tracking.server import server_unreachable, unreachable_sentence
from experiments.tracking.store import prepare_experiment, resolve_tracking_uri
from experiments.tracking.sweep_points import FAILURE_REASON_TAG


def build_logger(cfg: DictConfig, run_name: str, tags: dict[str, str]) -> EpochMLFlowLogger:
    uri = resolve_tracking_uri(cfg.logger.get("tracking_uri"), cfg.paths.output_dir)
    prepare_experiment(uri, cfg.logger.experiment_name)
    return EpochMLFlowLogger(
        experiment_name=cfg.logger.experiment_name,
        run_name=run_name,
        tracking_uri=uri,
        tags=tags,
        run_id=cfg.logger.get("run_id"),
    )


def log_trained_model(logger: EpochMLFlowLogger, model: Any, example: Any, epoch: int = 0) -> None:
    """Log `model` (a `TabularModel`: preprocessing + network + labels) as the run's pyfunc model, with
    explicit requirements and signature: the defaults infer requirements in a subprocess and take
    seconds, longer than training the seed network. `example` is a few raw rows.

    `epoch` is the epoch the weights come from: MLflow attaches the run's metrics of that step to the
    logged model, so its page shows the scores of these weights rather than those of epoch 0."""

    import mlflow
    import sklearn
    import torch
    from mlflow.models import Model

    from experiments.speedups import requirements_map_of
    from experiments.tracking.pyfunc_model import signature

    # A Python object as the model is the documented way to log a PythonModel; MLflow warns about it each time.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    logging.getLogger("mlflow.models").setLevel(logging.ERROR)
    requirements = {"torch": f"torch=={torch.__version__.split('+')[0]}",
                    "scikit-learn": f"scikit-learn=={sklearn.__version__}", "experiments": "experiments"}
    step = max(epoch, 0)
    logger.wait_handed_off()  # MLflow links the metrics of `step` already written: handed-off ones too
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(logger._tracking_uri)
    try:
        # By `run_id=`, not inside `mlflow.start_run`: resuming the run and ending it again would mark it
        # FINISHED before the run is really over (and cost two more store writes). Without an active run,
        # MLflow files a new model under the experiment `MLFLOW_EXPERIMENT_ID` names (else the Default
        # experiment, with a ./mlruns artifact location): set to the run's own for this call.
        # `Model.log` is what `mlflow.pyfunc.log_model` calls; it alone takes the run's id.
        with _environment(MLFLOW_EXPERIMENT_ID=logger.experiment_id), requirements_map_of(requirements), \
                warnings.catch_warnings():
            # MLflow's hint about integer columns in the example concerns inferred schemas; ours is given.
            warnings.filterwarnings("ignore", message=".*integer column.*", category=UserWarning)
            info = Model.log(
                artifact_path=None,
                name="model",
                flavor=mlflow.pyfunc,
                python_model=model,
                run_id=logger.run_id,
                step=step,
                signature=signature(model.preparation),
                input_example=example,
                pip_requirements=list(requirements.values()),
                metadata={"columns": model.preparation.dtypes, "task": model.preparation.target.task},
            )
    finally:
        mlflow.set_tracking_uri(previous_uri)
    logger.link_pending_metrics(info.model_id, step)  # MLflow linked those already written


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables set for the duration of the block, then restored."""
    import os

    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def finish_run(logger: EpochMLFlowLogger, status: str, reason: str | None = None) -> None:
    """Close the run with FINISHED, FAILED or KILLED (and why, as a tag), after queued metrics and
    background work (the learning-curve plot) land."""
    logger.write_pending(raise_errors=status == "FINISHED")  # raised: the caller closes the run as FAILED
    client, run_id = logger.experiment, logger.run_id
    if reason:
        client.set_tag(run_id, FAILURE_REASON_TAG, reason[:5000])
    client.set_terminated(run_id, status)


def close_failed(logger: EpochMLFlowLogger, err: BaseException, reason: str) -> None:
    """Close the run FAILED with `reason`. A tracking server that does not answer may not take the close
    either: the run then stays open until its sweep closes it (`tracking.sweep_orphans`), and the caller
    reports `err`, not the failed close."""
    if server_unreachable(err):
        reason = f"{unreachable_sentence(err)} while the run was being written"
    try:
        finish_run(logger, "FAILED", reason)
    except Exception as close_err:
        if not server_unreachable(close_err):
            raise
