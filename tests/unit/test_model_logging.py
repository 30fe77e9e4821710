"""The shortcut around MLflow's scan of every installed distribution keeps MLflow's requirement check."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mlflow.utils import requirements_utils

from experiments.speedups import requirements_map_of


def test_a_requirement_the_environment_does_not_meet_is_still_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in a fresh process: an earlier model load in this test process may have filled MLflow's map.
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    # MLflow's own loggers do not propagate to the root (pytest's caplog), so listen on the module's logger.
    logger = logging.getLogger(requirements_utils.__name__)
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with requirements_map_of({"torch": "torch==0.0.1"}):
            requirements_utils.warn_dependency_requirement_mismatches(["torch==0.0.1"])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    assert any("torch (current: " in w and "required: torch==0.0.1" in w for w in warnings), warnings
    # The full map is built as usual for whoever asks next in this process (a user's own log_model).
    assert requirements_utils._MODULES_TO_PACKAGES is None


def test_the_run_stays_running_until_training_testing_and_model_logging_are_over(monkeypatch, compose_cfg,
                                                                                 outputs) -> None:
    """The UI must not show a run FINISHED while it is still being tested or its model is still being
    logged (a crash then would leave a FINISHED run without a model)."""
    import io
    from contextlib import redirect_stdout

    from mlflow.tracking import MlflowClient

    from experiments.tracking import run as run_file
    from experiments.train import train
    from tests.conftest import store_uri

    seen: dict[str, str] = {}
    original = run_file.log_trained_model

    def record(logger, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["while_logging_model"] = logger.experiment.get_run(logger.run_id).info.status
        seen["plots_while_logging_model"] = [a.path for a in logger.experiment.list_artifacts(logger.run_id, "plots")]
        original(logger, *args, **kwargs)
        seen["after_logging_model"] = logger.experiment.get_run(logger.run_id).info.status
        seen["run_id"] = logger.run_id

    monkeypatch.setattr(run_file, "log_trained_model", record)
    with redirect_stdout(io.StringIO()):
        train(compose_cfg(["trainer.max_epochs=2"]))
    assert seen["while_logging_model"] == seen["after_logging_model"] == "RUNNING"
    run = MlflowClient(store_uri(outputs)).get_run(seen["run_id"])
    assert run.info.status == "FINISHED"
    assert run.outputs.model_outputs  # the model was logged to this run
    # The learning curve is drawn beside the test and the model logging, and attached before the close.
    assert seen["plots_while_logging_model"] == []
    assert [a.path for a in MlflowClient(store_uri(outputs)).list_artifacts(run.info.run_id, "plots")] == [
        "plots/learning_curve.png"]


def _handing_off(**kwargs: Any) -> Any:
    """A logger that hands its metrics off, as a population member's are to the population writer, and
    whose hand-off writes them only once waited for (as late as a busy writer could)."""
    from experiments.tracking.logger import EpochMLFlowLogger
    from experiments.tracking.run_record import write_metrics

    logger = EpochMLFlowLogger(**kwargs)
    logger.hand_off = lambda metrics: lambda: write_metrics(logger.experiment, logger.run_id, metrics)
    return logger


@pytest.mark.parametrize("flush_every_s, hand_off", [(0.0, False), (3600.0, False), (0.0, True)],
                         ids=["metrics-written-each-epoch", "metrics-written-at-close", "metrics-handed-off"])
def test_the_logged_model_carries_its_epochs_scores_however_the_metrics_were_buffered(
        monkeypatch, compose_cfg, outputs, flush_every_s, hand_off) -> None:
    """Metrics already written when the model is logged are linked by MLflow; those still buffered are
    linked by the logger as it writes them; those handed off to another process are written before the
    model is logged. The model's page must show the same scores either way."""
    import functools
    import io
    from contextlib import redirect_stdout

    from mlflow.tracking import MlflowClient

    from experiments.tracking import run as run_file
    from experiments.train import train
    from tests.conftest import store_uri

    factory = _handing_off if hand_off else run_file.EpochMLFlowLogger
    monkeypatch.setattr(run_file, "EpochMLFlowLogger", functools.partial(factory, flush_every_s=flush_every_s))
    with redirect_stdout(io.StringIO()):
        train(compose_cfg(["trainer.max_epochs=3"]))
    client = MlflowClient(store_uri(outputs))
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (output,) = run.outputs.model_outputs
    linked = {(m.key, m.step): m.value for m in client.get_logged_model(output.model_id).metrics}
    epoch = int(run.data.metrics["val/loss_best_epoch"])
    expected = {(key, epoch) for key in run.data.metrics if not key.startswith("test/")}
    assert set(linked) == expected
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/loss")}
    assert sorted(history) == [0, 1, 2]  # every epoch written once, whichever way
    assert linked[("val/loss", epoch)] == pytest.approx(history[epoch])
