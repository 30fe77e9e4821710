"""The shortcut around MLflow's scan of every installed distribution keeps MLflow's requirement check."""

from __future__ import annotations

import logging

import pytest
from mlflow.utils import requirements_utils

from experiments.tracking.run import _requirements_map_of


def test_a_requirement_the_environment_does_not_meet_is_still_reported(caplog: pytest.LogCaptureFixture) -> None:
    with _requirements_map_of({"torch": "torch==0.0.1"}), caplog.at_level(logging.WARNING):
        requirements_utils.warn_dependency_requirement_mismatches(["torch==0.0.1"])
    assert "torch (current: " in caplog.text and "required: torch==0.0.1" in caplog.text
    # The full map is built as usual for whoever asks next in this process (a user's own log_model).
    assert requirements_utils._MODULES_TO_PACKAGES is None
