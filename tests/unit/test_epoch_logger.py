"""The MLflow logger's buffer: metrics wait in memory, but never longer than `flush_every_s`."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from experiments.tracking.logger import EpochMLFlowLogger


def _written(logger: EpochMLFlowLogger) -> list[int]:
    return [m.step for m in MlflowClient(logger._tracking_uri).get_metric_history(logger.run_id, "val/loss")]


def test_buffered_metrics_wait_at_most_the_interval_counted_from_the_oldest(tmp_path: Path) -> None:
    logger = EpochMLFlowLogger(experiment_name="buffer", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                               flush_every_s=1.0)
    assert logger.run_id
    time.sleep(0.6)  # setup before fitting (opening the run, building the trainer)
    logger.save()  # what Lightning calls as fitting starts: nothing buffered, nothing due
    time.sleep(0.5)  # the first epoch
    logger.log_metrics({"val/loss": 0.9, "epoch": 0})
    assert _written(logger) == []  # the run is older than the interval, but these values are new
    time.sleep(1.2)
    logger.log_metrics({"val/loss": 0.8, "epoch": 1})
    assert _written(logger) == [0, 1]  # the oldest had waited the interval: both written in one go
    logger.log_metrics({"val/loss": 0.7, "epoch": 2})
    assert _written(logger) == [0, 1]
    logger.write_pending()  # as the run closes
    assert _written(logger) == [0, 1, 2]


def test_every_hand_off_is_waited_for_before_the_run_closes_and_the_first_failure_is_raised(tmp_path: Path) -> None:
    """Metrics handed to another process (a population's writer) are all waited for as the run closes,
    even after one of them failed, so none lands after the run's status; what is buffered then is
    written here."""
    import pytest

    logger = EpochMLFlowLogger(experiment_name="hand-off", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                               flush_every_s=0.0)
    handed: list[list[int]] = []
    waited: list[int] = []

    def hand_off(metrics: list) -> object:
        handed.append([m.step for m in metrics])
        number = len(handed)

        def wait() -> None:
            waited.append(number)
            if number == 1:
                raise RuntimeError("the store refused batch 1")

        return wait

    logger.hand_off = hand_off
    logger.log_metrics({"val/loss": 0.9, "epoch": 0})
    logger.log_metrics({"val/loss": 0.8, "epoch": 1})
    assert handed == [[0], [1]] and _written(logger) == []  # handed off, not written here
    logger.log_metrics({"test/loss": 0.7}, step=0)
    logger.flush_every_s = 3600.0
    logger.log_metrics({"val/loss": 0.7, "epoch": 2})  # buffered
    with pytest.raises(RuntimeError, match="batch 1"):
        logger.write_pending()
    assert waited == [1, 2, 3]  # the failure did not leave the later batches unwaited
    assert logger.hand_off is None
    logger.write_pending(raise_errors=False)  # as the run then closes FAILED
    assert _written(logger) == [2]  # what was still buffered, written in this process
