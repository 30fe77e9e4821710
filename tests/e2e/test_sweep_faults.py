"""Faults the way databases are tested: a sweep's process killed with SIGKILL at random moments, then the
sweep rerun; afterwards every invariant a user relies on is checked. The single-machine set-up: an Optuna
study and an MLflow store, both sqlite files, with trial heartbeats."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, run_cli, store_uri

pytestmark = pytest.mark.e2e

STUDY = ["sweep=optuna", "hydra.sweeper.params=null", "optimizer.lr=interval(1e-4,1e-1)",
         "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.study_name=faults", "logger.experiment_name=faults",
         "data.options.n_samples=300", "trainer.max_epochs=8", "logger.log_model=false", *FAST]
TARGET = 6  # COMPLETE trials the study must reach


def _children(outputs: Path) -> list:
    client = MlflowClient(store_uri(outputs))
    experiment = client.get_experiment_by_name("faults")
    if experiment is None:
        return []
    return [run for run in client.search_runs([experiment.experiment_id], max_results=1000)
            if run.data.tags.get("sweep.role") == "child"]


def _kill_at_random(outputs: Path, cwd: Path, rng: random.Random) -> None:
    """Start the sweep, wait until a trial's run is open, then SIGKILL the whole process group a random
    moment later (inside the trial, while metrics are written, or as the next trial's run is created)."""
    earlier = {run.info.run_id for run in _children(outputs)}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen([sys.executable, "-m", "experiments", "train", f"paths.output_dir={outputs}",
                                *STUDY, "hydra.sweeper.n_trials=20"], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(run.info.status == "RUNNING" and run.info.run_id not in earlier for run in _children(outputs)):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep never opened a run"
        time.sleep(0.2)
    time.sleep(rng.uniform(0.0, 1.0))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_killed_sweeps_leave_no_run_running_and_a_rerun_completes_the_study(tmp_path: Path, outputs: Path) -> None:
    rng = random.Random(7)
    kills = 2
    for _ in range(kills):
        _kill_at_random(outputs, tmp_path, rng)
    time.sleep(3.5)  # the heartbeat grace period (3 beats of 1 s): the killed trials are now stale
    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{outputs / 'optuna.db'}")
    complete = sum(t.state.name == "COMPLETE" for t in study.trials)
    result = run_cli(["train", f"paths.output_dir={outputs}", *STUDY,
                      f"hydra.sweeper.n_trials={TARGET - complete}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # A kill between asking a trial and its first heartbeat leaves a trial that never beat: the rerun gave
    # it one beat as it started, so the next sweep on the study (here one that asks for nothing more)
    # finds it stale.
    time.sleep(3.5)
    held = len(optuna.load_study(study_name="faults", storage=f"sqlite:///{outputs / 'optuna.db'}").trials)
    again = run_cli(["train", f"paths.output_dir={outputs}", *STUDY, f"hydra.sweeper.total_trials={held}"],
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]

    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{outputs / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == TARGET
    # A kill inside a trial fails it; one that lands between two trials fails none.
    assert "RUNNING" not in states and 1 <= states.count("FAIL") <= kills
    children = _children(outputs)
    assert [run.info.status for run in children if run.info.status == "RUNNING"] == []
    by_trial: dict[int, list] = {}
    for run in children:
        by_trial.setdefault(int(run.data.params["optuna.trial_number"]), []).append(run)
    assert all(len(runs) == 1 for runs in by_trial.values()), "a trial has two runs"
    for trial in study.trials:
        runs = by_trial.get(trial.number, [])
        if trial.state.name == "COMPLETE":
            assert [run.info.status for run in runs] == ["FINISHED"]
            assert runs[0].data.metrics["val/loss_best"] == pytest.approx(trial.value)
        elif trial.state.name == "PRUNED":  # the preset's pruner at work
            assert [(run.info.status, run.data.tags["optuna.state"]) for run in runs] == [("KILLED", "PRUNED")]
        else:  # killed: its run (if it had opened one) is closed, saying why
            assert all(run.info.status in ("FAILED", "KILLED") and run.data.tags.get("failure_reason")
                       for run in runs)
    client = MlflowClient(store_uri(outputs))
    parents = client.search_runs([children[0].info.experiment_id], "tags.`sweep.role` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for run in children)
    # The store still opens for the rest of the tool: the comparison reads every run.
    compared = run_cli(["compare", f"--tracking-uri={store_uri(outputs)}", "--experiment", "faults",
                        "--group-by", "sweep", "--no-log", "--output", str(tmp_path / "report")], cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr[-2000:]
