"""A tracking server that does not answer is recognised as such (and nothing else is), named in one
sentence, with MLflow's retry settings bounded unless the user set them."""

from __future__ import annotations

import os

import pytest
from mlflow.tracking import MlflowClient

from experiments.errors import UserError
from experiments.tracking.server import (
    SERVER_WAITS,
    TrackingServerUnavailable,
    bound_server_waits,
    in_one_sentence,
    server_unreachable,
)
from tests.conftest import free_port


def _refused(monkeypatch: pytest.MonkeyPatch) -> BaseException:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # one try: the port has no server
    port = free_port()
    with pytest.raises(Exception) as caught:
        MlflowClient(f"http://127.0.0.1:{port}").get_experiment_by_name("x")
    return caught.value


def test_a_refused_connection_becomes_one_sentence_naming_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _refused(monkeypatch)
    assert server_unreachable(err)
    alone, swept = in_one_sentence(err, in_sweep=False), in_one_sentence(err, in_sweep=True)
    assert isinstance(alone, TrackingServerUnavailable) and isinstance(swept, TrackingServerUnavailable)
    assert str(alone).startswith("the tracking server at http://127.0.0.1:") and "\n" not in str(alone)
    assert "gave up after 0 retries" in str(alone) and "run it again once the server is back" in str(alone)
    assert "this job fails" in str(swept)


def test_other_errors_pass_through_unchanged() -> None:
    for err in (ValueError("bad"), UserError("a mistake"), RuntimeError("API request to http://h/api/ failed")):
        assert not server_unreachable(err) and in_one_sentence(err, in_sweep=True) is err


def test_retry_settings_are_bounded_unless_the_user_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVER_WAITS:  # set, then removed: what the test leaves is undone afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")
    bound_server_waits()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
