"""What must hold after sweep workers were killed at random and the sweep was rerun, whatever the store:
checked against the Optuna study and the MLflow runs as a user would read them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli


def sweep_children(tracking_uri: str, experiment_name: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return [run for run in client.search_runs([experiment.experiment_id], max_results=1000)
            if run.data.tags.get("sweep.role") == "child"]


def check_after_faults(study, tracking_uri: str, experiment_name: str, target: int, most_failed: int,
                       report_dir: Path) -> None:
    """The study reached `target` COMPLETE trials and nothing is RUNNING; a kill failed the trials it caught
    running (at least one in all, at most `most_failed`: kills × trials a worker runs at once); every run
    names its trial (even one whose worker died before it wrote its params); every trial has at most one
    run and a COMPLETE one exactly one FINISHED run holding Optuna's value; killed trials' runs are closed saying why; one FINISHED parent;
    `experiments compare` reads the store."""
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == target
    assert "RUNNING" not in states and 1 <= states.count("FAIL") <= most_failed, states
    children = sweep_children(tracking_uri, experiment_name)
    assert [run.info.status for run in children if run.info.status == "RUNNING"] == []
    by_trial: dict[int, list] = {}
    for run in children:
        # Tagged when MLflow created the run: a worker killed before the params were written still names it.
        assert run.data.tags.get("optuna.trial_number"), f"run {run.info.run_id} names no trial"
        assert run.data.params.get("optuna.trial_number", run.data.tags["optuna.trial_number"]) \
            == run.data.tags["optuna.trial_number"]
        by_trial.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
    assert all(len(runs) == 1 for runs in by_trial.values()), "a trial has two runs"
    assert set(by_trial) <= {t.number for t in study.trials}, "a run belongs to no trial"
    for trial in study.trials:
        runs = by_trial.get(trial.number, [])
        if trial.state.name == "COMPLETE":
            assert [run.info.status for run in runs] == ["FINISHED"]
            assert runs[0].data.metrics["val/loss_best"] == pytest.approx(trial.value)
        elif trial.state.name == "PRUNED":  # a pruner at work
            assert [(run.info.status, run.data.tags["optuna.state"]) for run in runs] == [("KILLED", "PRUNED")]
        else:  # killed: its run (if it had opened one) is closed, saying why
            assert all(run.info.status in ("FAILED", "KILLED") and run.data.tags.get("failure_reason")
                       for run in runs)
    client = MlflowClient(tracking_uri)
    parents = client.search_runs([children[0].info.experiment_id], "tags.`sweep.role` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for run in children)
    compared = run_cli(["compare", f"--tracking-uri={tracking_uri}", "--experiment", experiment_name,
                        "--group-by", "sweep", "--no-log", "--output", str(report_dir)], cwd=report_dir.parent)
    assert compared.returncode == 0, compared.stderr[-2000:]
