"""The team set-up on a real database server: a throwaway PostgreSQL on 127.0.0.1 behind a real
`mlflow server` (runs, metrics, the sweep's parent) and holding the Optuna study, with several workers —
separate `experiments train sweep=optuna` processes — on one study and one tracking server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, free_port, mlflow_server, run_cli
from tests.postgres_server import PostgresServer, why_not_available

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(why_not_available() is not None,
                                                  reason=str(why_not_available()))]

QUICK = [*FAST, "trainer.max_epochs=2", "data.options.n_samples=300", "logger.log_model=false"]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), free_port())
    server.start()
    try:
        for database in ("mlflow", "optuna"):
            server.create_database(database)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tracking_server(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` with its backend store on PostgreSQL and artifacts through its proxy."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server"), postgres.url("mlflow"), workers=2) as uri:
        yield uri


def test_workers_share_one_postgres_study_and_one_tracking_server(
        postgres: PostgresServer, tracking_server: str, tmp_path: Path, outputs: Path) -> None:
    storage = postgres.url("optuna")

    def worker(name: str) -> Any:
        return run_cli(["train", "sweep=optuna", f"paths.output_dir={outputs}", *QUICK,
                        f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=team",
                        "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=3", "hydra/launcher=population",
                        f"logger.tracking_uri={tracking_server}", "logger.experiment_name=team",
                        f"hydra.sweep.dir={tmp_path / name}"], cwd=tmp_path)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(worker, ["worker1", "worker2"]))
    for result in results:
        assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])

    import optuna

    study = optuna.load_study(study_name="team", storage=storage)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(6)) and {t.state.name for t in trials} == {"COMPLETE"}
    client = MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name("team")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1, [(run.info.run_name, run.info.status) for run in parents]
    parent = parents[0]
    children = [run for run in runs if run is not parent]
    # Every trial exactly once, as a child of the one parent, with the value Optuna holds.
    by_trial = {int(run.data.params["optuna.trial_number"]): run for run in children}
    assert len(children) == 6 and sorted(by_trial) == list(range(6))
    for trial in trials:
        run = by_trial[trial.number]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.metrics["val/loss_best"] == pytest.approx(trial.value)
    best = min(children, key=lambda run: run.data.metrics["val/loss_best"])
    assert parent.data.tags["sweep.best_run_id"] == best.info.run_id
    assert parent.info.status == "FINISHED"
    assert not (outputs / "mlflow.db").exists() and not (outputs / "optuna.db").exists()
