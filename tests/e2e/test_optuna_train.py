"""Optuna sweeps of the real `experiments train` (`sweep=optuna`): real processes, a real sqlite Optuna
storage and a real sqlite MLflow store, both under the test's tmp dir (the preset keeps the study
beside the MLflow store, in `paths.output_dir`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, parent_and_children, run_cli

pytestmark = pytest.mark.e2e

# The sweep machinery is under test, not the model: small data, short runs, no model artifact.
QUICK = [*FAST, "logger.log_model=false", "trainer.max_epochs=2"]
SMALL_RANDOM_DATA = "data.options.n_samples=300"  # the default data (seed_random), 300 rows
# For a sweep space given on the command line instead of the preset's.
OWN_SPACE = ["hydra.sweeper.params=null"]


def optuna_sweep(outputs: Path, cwd: Path, *args: str) -> Any:
    return run_cli(["train", "sweep=optuna", f"paths.output_dir={outputs}", *QUICK, *args], cwd=cwd)


def ok(result: Any) -> Any:
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result


def load_study(outputs: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{outputs / 'optuna.db'}")


def sweep_runs(outputs: Path) -> tuple[MlflowClient, Any, dict[int, Any]]:
    """The store's one parent run and its children by Optuna trial number."""
    client, parent, children = parent_and_children(outputs)
    by_trial = {int(run.data.params["optuna.trial_number"]): run for run in children}
    assert len(by_trial) == len(children), "two runs claim the same trial"
    return client, parent, by_trial


def test_optuna_sweep_resumes_its_study_under_one_parent(tmp_path: Path, outputs: Path) -> None:
    command = [SMALL_RANDOM_DATA, "hydra.sweeper.n_trials=6", "hydra.sweeper.seed=0"]
    first = ok(optuna_sweep(outputs, tmp_path, *command))

    study = load_study(outputs, "mlp_seed_random")  # the preset's name: mlp_<dataset>
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 6
    _, parent, runs = sweep_runs(outputs)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.optuna_study"] == "mlp_seed_random"
    assert sorted(runs) == list(range(6))
    for trial in study.trials:  # each trial's value is its run's objective, with the trial's params
        run = runs[trial.number]
        assert run.info.status == "FINISHED"
        assert trial.value == pytest.approx(run.data.metrics["val/loss_best"])
        assert float(run.data.params["optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"])
    best = study.best_trial
    assert parent.data.tags["sweep.best_run_id"] == runs[best.number].info.run_id

    again = ok(optuna_sweep(outputs, tmp_path, *command))
    study = load_study(outputs, "mlp_seed_random")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 12
    _, parent_again, runs = sweep_runs(outputs)  # still exactly one parent: the same one, continued
    assert parent_again.info.run_id == parent.info.run_id and parent_again.info.status == "FINISHED"
    assert f"Sweep parent run: {parent.info.run_id} (continued" in again.stdout
    assert f"Sweep parent run: {parent.info.run_id} (new" in first.stdout
    assert sorted(runs) == list(range(12))
    assert parent_again.data.metrics["sweep/children"] == 12
    # The rerun searched on: none of its proposals repeats one of the first six.
    lrs = [t.params["optimizer.lr"] for t in study.trials]
    assert not set(lrs[:6]) & set(lrs[6:])


def test_an_invalid_value_fails_its_trial_and_the_sweep_goes_on(tmp_path: Path, outputs: Path) -> None:
    result = ok(optuna_sweep(outputs, tmp_path, SMALL_RANDOM_DATA, *OWN_SPACE, "hydra.sweeper.sampler=grid",
                             "hydra.sweeper.n_trials=2", "model.activation=choice(nope,relu)"))

    trials = {t.params["model.activation"]: t for t in load_study(outputs, "mlp_seed_random").trials}
    assert trials["nope"].state.name == "FAIL"
    assert "model.activation='nope' is not known" in trials["nope"].user_attrs["fail_reason"]
    assert trials["relu"].state.name == "COMPLETE"

    # The bad value is refused before training starts, so that trial has no run of its own: the parent
    # records the failed job (and ends FAILED), the good trial's run is there and FINISHED.
    _, parent, runs = sweep_runs(outputs)
    assert list(runs) == [trials["relu"].number] and runs[trials["relu"].number].info.status == "FINISHED"
    assert parent.info.status == "FAILED"
    assert (parent.data.metrics["sweep/jobs"], parent.data.metrics["sweep/failed_jobs"]) == (2, 1)
    assert "model.activation='nope' is not known" in parent.data.tags["mlflow.note.content"]
    assert "Traceback" not in result.stdout + result.stderr


def test_the_pruner_stops_a_clearly_bad_trial(tmp_path: Path, outputs: Path) -> None:
    # Grid order (sampler seed 1): lr=1e-2 first, then lr=1e-6, which barely moves from its (identical)
    # initialization and is behind the finished trial's curve after its first epoch.
    result = ok(optuna_sweep(
        outputs, tmp_path, *OWN_SPACE, "data=wine", "trainer.max_epochs=4", "hydra.sweeper.sampler=grid",
        "hydra.sweeper.seed=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=median",
        "hydra.sweeper.n_startup_trials=1", "hydra.sweeper.n_warmup_steps=0", "optimizer.lr=choice(1e-2,1e-6)",
    ))

    good, bad = load_study(outputs, "mlp_wine").trials
    assert (good.params["optimizer.lr"], bad.params["optimizer.lr"]) == (1e-2, 1e-6), "grid order changed: pick a seed"
    assert good.state.name == "COMPLETE" and len(good.intermediate_values) == 4
    assert bad.state.name == "PRUNED" and len(bad.intermediate_values) < 4
    assert f"Trial {bad.number} pruned" in result.stdout + result.stderr

    client, parent, runs = sweep_runs(outputs)
    pruned = runs[bad.number]
    assert pruned.info.status == "KILLED" and pruned.data.tags["optuna.state"] == "PRUNED"
    assert pruned.data.tags["failure_reason"].startswith("TrialPruned")
    assert len(client.get_metric_history(pruned.info.run_id, "val/loss")) == len(bad.intermediate_values)
    assert runs[good.number].info.status == "FINISHED"
    # Pruning is the search working, not a failure.
    assert parent.info.status == "FINISHED"
    assert (parent.data.metrics["sweep/pruned_jobs"], parent.data.metrics["sweep/failed_jobs"]) == (1, 0)
    assert parent.data.metrics["sweep/failed_children"] == 0


def test_two_workers_share_one_study_and_one_parent(tmp_path: Path, outputs: Path) -> None:
    # The same command in two terminals at once, against a fresh store and a fresh study.
    def worker(name: str) -> Any:
        return optuna_sweep(outputs, tmp_path, SMALL_RANDOM_DATA, "hydra.sweeper.n_trials=2",
                            f"hydra.sweep.dir={tmp_path / name}")

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(worker, ["worker1", "worker2"]))
    for result in results:
        ok(result)

    study = load_study(outputs, "mlp_seed_random")
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    _, parent, runs = sweep_runs(outputs)
    assert sorted(runs) == [0, 1, 2, 3] and {run.info.status for run in runs.values()} == {"FINISHED"}
    assert all(f"Sweep parent run: {parent.info.run_id}" in result.stdout for result in results)
    # Each worker ran its own two trials (job dirs are named by trial number).
    dirs = [{int(p.name) for p in (tmp_path / name).iterdir() if p.name.isdigit()} for name in ("worker1", "worker2")]
    assert [len(d) for d in dirs] == [2, 2] and dirs[0] | dirs[1] == {0, 1, 2, 3}


def test_a_direction_against_monitor_mode_stops_before_any_trial(tmp_path: Path, outputs: Path) -> None:
    result = optuna_sweep(outputs, tmp_path, SMALL_RANDOM_DATA, "hydra.sweeper.direction=maximize")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: hydra.sweeper.direction=maximize contradicts monitor_mode=min (monitor=val/loss); "
        "set hydra.sweeper.direction=minimize, or monitor_mode to match.")
    assert not (outputs / "optuna.db").exists() and not (outputs / "mlflow.db").exists()  # nothing started
