"""A learning-curve PNG per run: train vs val loss and main metric per epoch, logged to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import MLFlowLogger

from experiments.learning_curve_plot import curve_keys, log_learning_curve, plot_learning_curve


class LearningCurvePlot(pl.Callback):
    """Records the epoch-end `train/*` and `val/*` values and draws them when training ends.

    The training-set values are the eval-mode pass over the training split (see `ExperimentModule`), so
    the distance between the two lines is the generalization gap. The history is part of the callback's
    checkpoint state, so a resumed run still plots every epoch. The PNG goes to the run's MLflow
    artifacts under `artifact_path`, drawn and attached just before the run closes (after the test
    split, so a test that fails leaves no half-finished run behind a plot); without an MLflow logger it
    is written to the trainer's root dir.
    """

    def __init__(self, filename: str = "learning_curve.png", artifact_path: str = "plots") -> None:
        self.filename = filename
        self.artifact_path = artifact_path
        self.history: dict[str, dict[int, float]] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metric = getattr(pl_module, "main_metric", "acc")
        for key in curve_keys(metric):
            value = trainer.callback_metrics.get(key)
            if value is not None:
                self.history.setdefault(key, {})[trainer.current_epoch] = float(value)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        metric = getattr(pl_module, "main_metric", "acc")
        mlflow_logger = next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)
        if mlflow_logger is None:
            plot_learning_curve(self.history, metric, Path(trainer.default_root_dir) / self.filename)
            return
        history = {k: dict(v) for k, v in self.history.items()}

        def log_plot() -> None:
            log_learning_curve(mlflow_logger.experiment, mlflow_logger.run_id, history, metric, self.filename,
                               self.artifact_path)

        before_close = getattr(mlflow_logger, "before_close", None)
        if before_close is None:  # a plain MLFlowLogger closes the run itself: log the plot now
            log_plot()
        else:
            before_close.append(log_plot)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: dict(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: {int(e): float(x) for e, x in v.items()} for k, v in state_dict.get("history", {}).items()}
