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
    running (at least one in all, at most `most_failed`: kills × trials a worker runs at once); a run whose
    worker died before it wrote its params cannot name its trial: it must be closed FAILED saying why, and
    stand for a failed trial without another run; every trial has at most one run and a COMPLETE one
    exactly one FINISHED run holding Optuna's value; killed trials' runs are closed saying why; one FINISHED parent;
    `experiments compare` reads the store."""
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == target
    assert "RUNNING" not in states and 1 <= states.count("FAIL") <= most_failed, states
    children = sweep_children(tracking_uri, experiment_name)
    assert [run.info.status for run in children if run.info.status == "RUNNING"] == []
    by_trial: dict[int, list] = {}
    unlinked = []  # killed after MLflow created the run, before its params (the trial number) were written
    for run in children:
        if "optuna.trial_number" not in run.data.params:
            unlinked.append(run)
            continue
        by_trial.setdefault(int(run.data.params["optuna.trial_number"]), []).append(run)
    assert all(run.info.status == "FAILED" and run.data.tags.get("failure_reason") for run in unlinked)
    assert all(len(runs) == 1 for runs in by_trial.values()), "a trial has two runs"
    assert set(by_trial) <= {t.number for t in study.trials}, "a run belongs to no trial"
    assert len(unlinked) <= sum(t.state.name == "FAIL" and t.number not in by_trial for t in study.trials)
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
