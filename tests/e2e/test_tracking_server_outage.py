"""The tracking server going away mid-sweep: a real `mlflow server` stopped while an Optuna sweep runs, then
started again on the same port. Writes give up within seconds, each failed trial says so in one line and
is recorded FAIL, and the sweep goes on once the server is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, free_port, mlflow_server, run_cli

pytestmark = pytest.mark.e2e

FAILED_LINE = "failed: TrackingServerUnavailable: the tracking server at "


def _children(uri: str) -> list:
    experiment = MlflowClient(uri).get_experiment_by_name("outage")
    if experiment is None:
        return []
    return [run for run in MlflowClient(uri).search_runs([experiment.experiment_id], max_results=1000)
            if run.data.tags.get("sweep.role") == "child"]


def _wait_for(condition, seconds: float, what: str, process: subprocess.Popen) -> float:
    """Poll until `condition()`; return how long it took."""
    start = time.monotonic()
    while not condition():
        assert process.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() - start < seconds, f"no {what} within {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - start


def test_a_sweep_outlives_its_tracking_server_going_away(tmp_path: Path, outputs: Path) -> None:
    port, backend = free_port(), f"sqlite:///{tmp_path / 'server.db'}"
    log = tmp_path / "sweep.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with mlflow_server(tmp_path, backend, port=port) as uri:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "experiments", "train", "sweep=optuna", "hydra.sweeper.params=null",
             "optimizer.lr=interval(1e-3,1e-1)", "hydra.sweeper.n_trials=8", "hydra.sweeper.pruner=none",
             f"paths.output_dir={outputs}", f"logger.tracking_uri={uri}", "logger.experiment_name=outage",
             "data.options.n_samples=300", "trainer.max_epochs=30", "logger.log_model=false", *FAST],
            cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log.open("w"), stderr=subprocess.STDOUT)
        # Stopped while a trial's run is open, after two have finished.
        _wait_for(lambda: [run.info.status for run in _children(uri)].count("FINISHED") >= 2
                  and "RUNNING" in [run.info.status for run in _children(uri)], 180, "trial running", sweep)
    # The server is gone: the running trial's next write gives up in seconds (MLflow alone retries for
    # about four minutes) and says so in one line.
    waited = _wait_for(lambda: FAILED_LINE in log.read_text(), 90, "line about the server", sweep)
    with mlflow_server(tmp_path, backend, port=port) as uri:
        assert sweep.wait(timeout=300) == 0, log.read_text()[-3000:]
        output = log.read_text()
        children = _children(uri)
        parents = MlflowClient(uri).search_runs([children[0].info.experiment_id], "tags.`sweep.role` = 'parent'")

    assert waited < 60
    assert "Traceback" not in output and "Retrying (Retry(" not in output
    study = optuna.load_study(study_name="mlp_seed_random", storage=f"sqlite:///{outputs / 'optuna.db'}")
    trials = study.get_trials()
    failed = [t.number for t in trials if t.state.name == "FAIL"]
    assert len(trials) == 8 and failed and {t.state.name for t in trials} == {"COMPLETE", "FAIL"}
    # One line per failed trial, naming the server.
    failure_lines = [line for line in output.splitlines() if FAILED_LINE in line]
    assert [int(line.split("Trial ")[1].split()[0]) for line in failure_lines] == failed
    assert all(f"127.0.0.1:{port} did not answer" in line for line in failure_lines)
    # The sweep went on once the server was back: trials after the outage completed and were recorded.
    assert max(t.number for t in trials if t.state.name == "COMPLETE") > max(failed)
    by_trial: dict[int, list] = {}
    for run in children:
        by_trial.setdefault(int(run.data.params["optuna.trial_number"]), []).append(run)
    for trial in trials:
        runs = by_trial.get(trial.number, [])
        if trial.state.name == "COMPLETE":
            assert [run.info.status for run in runs] == ["FINISHED"]
            assert runs[0].data.metrics["val/loss_best"] == pytest.approx(trial.value)
        else:  # a run the outage caught open was closed FAILED, saying why, when the sweep ended
            assert all(run.info.status == "FAILED" and run.data.tags.get("failure_reason") for run in runs)
    assert by_trial.get(failed[0]), "the trial the outage caught has no run"
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert parents[0].data.tags["failure_reason"] == f"{len(failed)} of 8 jobs failed."


def test_a_run_against_a_server_that_does_not_answer_fails_in_one_sentence(tmp_path: Path, outputs: Path) -> None:
    # The user's own MLflow retry setting wins over ours.
    result = run_cli(["train", f"paths.output_dir={outputs}", f"logger.tracking_uri=http://127.0.0.1:{free_port()}",
                      "trainer.max_epochs=1", *FAST], cwd=tmp_path, env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"})
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: the tracking server at http://127.0.0.1:"), result.stderr
    assert "gave up after 1 retries" in error[0] and "run it again once the server is back" in error[0]


def test_a_population_whose_server_goes_away_stops_in_one_line_and_finishes_no_run(tmp_path: Path,
                                                                                   outputs: Path) -> None:
    """The server stopped while a grid's population trains: the sweep stops (Hydra's grid stops at its first
    failed job) within seconds with the one sentence a job alone prints, no traceback, and no run of it is
    FINISHED: the server never got numbers it could show as a result."""
    port, backend = free_port(), f"sqlite:///{tmp_path / 'server.db'}"
    log = tmp_path / "sweep.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with mlflow_server(tmp_path, backend, port=port) as uri:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "experiments", "train", "-m", "hydra/launcher=population", "seed=1,2,3,4",
             f"paths.output_dir={outputs}", f"logger.tracking_uri={uri}", "logger.experiment_name=outage",
             "data.options.n_samples=2000", "trainer.max_epochs=2000", "logger.log_model=false", *FAST],
            cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log.open("w"), stderr=subprocess.STDOUT)
        # Stopped once every member's run is open: the population is training.
        _wait_for(lambda: len(_children(uri)) == 4 and "Training 4 runs as one population" in log.read_text(),
                  180, "population training", sweep)
    stopped = time.monotonic()
    code = sweep.wait(timeout=300)
    took = time.monotonic() - stopped
    output = log.read_text()
    with mlflow_server(tmp_path, backend, port=port) as uri:
        children = _children(uri)

    assert code == 1 and took < 120, output[-3000:]
    assert "Traceback" not in output and "Retrying (Retry(" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port} did not answer" in errors[0], output[-3000:]
    assert "this job fails" in errors[0]
    assert len(children) == 4 and "FINISHED" not in {run.info.status for run in children}
