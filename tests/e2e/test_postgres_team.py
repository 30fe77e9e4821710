"""The team set-up on a real database server: a throwaway PostgreSQL on 127.0.0.1 behind a real
`mlflow server` (runs, metrics, the sweep's parent) and holding the Optuna study, with several workers —
separate `experiments train sweep=optuna` processes — on one study and one tracking server."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, free_port, mlflow_server, run_cli
from tests.postgres_server import PostgresServer, why_not_available
from tests.sweep_invariants import check_after_faults, sweep_children

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


def _worker(name: str, storage: str, tracking_server: str, outputs: Path, cwd: Path, n_trials: int,
            launcher: str) -> list[str]:
    return [sys.executable, "-m", "experiments", "train", "sweep=optuna", "hydra.sweeper.params=null",
            "optimizer.lr=interval(1e-4,1e-1)", "hydra.sweeper.pruner=none", "hydra.sweeper.heartbeat_interval=1",
            f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=faults", f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=2", f"hydra/launcher={launcher}", f"paths.output_dir={outputs}",
            f"logger.tracking_uri={tracking_server}", "logger.experiment_name=faults", f"hydra.sweep.dir={cwd / name}",
            "data.options.n_samples=300", "trainer.max_epochs=8", "logger.log_model=false", *FAST]


def _kill_once_running(process: subprocess.Popen, tracking_server: str, rng: random.Random) -> None:
    """SIGKILL a worker a random moment after one of its trials opened a run: inside a trial, while
    metrics are written, as a run is created or closed, or while the study is told a result."""
    deadline = time.monotonic() + 180
    while not any(run.info.status == "RUNNING" and run.data.tags.get("sweep.pid") == str(process.pid)
                  for run in sweep_children(tracking_server, "faults")):
        assert process.poll() is None and time.monotonic() < deadline, "the worker never opened a run"
        time.sleep(0.3)
    time.sleep(rng.uniform(0.0, 2.0))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_workers_killed_at_random_on_postgres_leave_every_trial_once(
        postgres: PostgresServer, tracking_server: str, tmp_path: Path, outputs: Path) -> None:
    import optuna

    storage, rng, kills = postgres.url("optuna"), random.Random(11), 0
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    for round_ in range(2):  # two workers each round, one of them training its trials as a population
        workers = [subprocess.Popen(_worker(f"w{round_}{i}", storage, tracking_server, outputs, tmp_path, 20, launcher),
                                    cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
                   for i, launcher in enumerate(["basic", "population"])]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda worker: _kill_once_running(worker, tracking_server, rng), workers))
        kills += len(workers)
    time.sleep(3.5)  # the heartbeat grace period (3 beats of 1 s): the killed trials are now stale
    complete = sum(t.state.name == "COMPLETE" for t in optuna.load_study(study_name="faults", storage=storage).trials)
    target = max(6, complete + 2)  # COMPLETE trials the study must reach: the rerun always has some to run
    missing = target - complete
    # The rerun: two workers again, sharing what is missing.
    with ThreadPoolExecutor(2) as pool:
        reruns = list(pool.map(
            lambda job: run_cli(_worker(*job)[3:], cwd=tmp_path),
            [(f"r{i}", storage, tracking_server, outputs, tmp_path, n, "basic")
             for i, n in enumerate([missing // 2, missing - missing // 2]) if n]))
    assert all(result.returncode == 0 for result in reruns), [result.stderr[-2000:] for result in reruns]
    # A trial killed before its first heartbeat got one beat from the rerun: the next sweep on the study
    # (one that asks for nothing more) finds it stale.
    time.sleep(3.5)
    held = len(optuna.load_study(study_name="faults", storage=storage).trials)
    again = run_cli([*_worker("last", storage, tracking_server, outputs, tmp_path, 1, "basic")[3:],
                     f"hydra.sweeper.total_trials={held}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]

    check_after_faults(optuna.load_study(study_name="faults", storage=storage), tracking_server, "faults", target,
                       kills * 2, tmp_path / "report")
