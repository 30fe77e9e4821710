"""The shortcut around MLflow's scan of every installed distribution keeps MLflow's requirement check."""

from __future__ import annotations

import logging

from mlflow.utils import requirements_utils

from experiments.tracking.run import _requirements_map_of


def test_a_requirement_the_environment_does_not_meet_is_still_reported() -> None:
    # MLflow's own loggers do not propagate to the root (pytest's caplog), so listen on the module's logger.
    logger = logging.getLogger(requirements_utils.__name__)
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with _requirements_map_of({"torch": "torch==0.0.1"}):
            requirements_utils.warn_dependency_requirement_mismatches(["torch==0.0.1"])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    assert any("torch (current: " in w and "required: torch==0.0.1" in w for w in warnings), warnings
    # The full map is built as usual for whoever asks next in this process (a user's own log_model).
    assert requirements_utils._MODULES_TO_PACKAGES is None
