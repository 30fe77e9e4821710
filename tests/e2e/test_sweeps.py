"""Sweeps end to end: real `experiments train -m` processes, real launchers, a real sqlite MLflow store."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from experiments.paths import project_root
from tests.conftest import FAST, parent_and_children, run_cli, store_uri

pytestmark = pytest.mark.e2e

# Two short epochs on 300 rows, no model artifact: the sweep machinery is under test, not the training.
QUICK = [*FAST, "trainer.max_epochs=2", "logger.log_model=false", "data.options.n_samples=300"]
METRIC = "val/loss_best"


def sweep(outputs: Path, cwd: Path, *args: str) -> Any:
    return run_cli(["train", "-m", f"paths.output_dir={outputs}", *QUICK, *args], cwd=cwd)


def test_grid_sweep_is_one_parent_with_a_finished_child_per_point(tmp_path: Path, outputs: Path) -> None:
    result = sweep(outputs, tmp_path, "model.activation=relu,tanh", "optimizer.lr=1e-3,1e-2")
    assert result.returncode == 0, result.stderr[-3000:]
    # Four runs in one process: what Lightning says of the devices is said once, not once a run.
    console = result.stdout + result.stderr
    assert console.count("GPU available:") == 1 and console.count("TPU available:") == 1, console[-3000:]

    client, parent, children = parent_and_children(outputs)
    assert parent.info.status == "FINISHED"
    assert "model.activation=relu,tanh optimizer.lr=1e-3,1e-2" in parent.data.tags["sweep.command"]
    assert json.loads(parent.data.tags["sweep.search_space"]) == {"model.activation": "relu,tanh",
                                                                  "optimizer.lr": "1e-3,1e-2"}
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4
    points = sorted((c.data.params["model.activation"], c.data.params["optimizer.lr"]) for c in children)
    assert points == sorted(itertools.product(["relu", "tanh"], ["0.001", "0.01"]))
    # Named by the swept values, each once: the activation is in the base name, lr is added.
    assert sorted(c.info.run_name for c in children) == [
        "mlp-relu-10x8 lr=0.001", "mlp-relu-10x8 lr=0.01", "mlp-tanh-10x8 lr=0.001", "mlp-tanh-10x8 lr=0.01"]

    # The summary names the child with the lowest val/loss_best, as monitor_mode=min asks.
    best = min(children, key=lambda c: c.data.metrics[METRIC])
    tags, metrics = parent.data.tags, parent.data.metrics
    assert tags["sweep.best_run_id"] == best.info.run_id
    assert tags["sweep.best_params"] == (f"model.activation={best.data.params['model.activation']} "
                                         f"optimizer.lr={best.data.params['optimizer.lr']}")
    assert metrics[f"sweep/best/{METRIC}"] == pytest.approx(best.data.metrics[METRIC])
    assert (metrics["sweep/jobs"], metrics["sweep/failed_jobs"], metrics["sweep/children"]) == (4, 0, 4)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")} >= {"sweep/summary.json",
                                                                                  "sweep/multirun.yaml"}


def test_a_failing_job_ends_the_parent_failed_never_running(tmp_path: Path, outputs: Path) -> None:
    # The bad value comes first: the grid goes on after it, then the command reports the failure.
    result = sweep(outputs, tmp_path, "model.activation=relux,relu")
    assert result.returncode == 2
    # The job's mistake reads as the one sentence a single run gives, not as its traceback.
    assert "error: model.activation='relux' is not known; choose one of: relu," in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

    _, parent, children = parent_and_children(outputs)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["sweep/failed_jobs"] == 1 and parent.data.metrics["sweep/jobs"] == 2
    assert "model.activation=relux" in parent.data.tags["mlflow.note.content"]
    assert [(c.data.params["model.activation"], c.info.status) for c in children] == [("relu", "FINISHED")]


def _all_runs(outputs: Path, view: int = ViewType.ACTIVE_ONLY) -> list[Any]:
    client = MlflowClient(store_uri(outputs))
    return client.search_runs([e.experiment_id for e in client.search_experiments()], run_view_type=view)


@pytest.mark.parametrize(("overrides", "expected"), [
    # Hydra fails composing each job
    (["model.activaton=relu,tanh"], "error: model.activaton is not a config key (did you mean 'activation'?)"),
    (["model.activation=relux,reluy"], "model.activation='relux' is not known"),  # each fails before its run
])
def test_a_sweep_whose_jobs_all_fail_before_a_run_leaves_no_parent_run(
        tmp_path: Path, outputs: Path, overrides: list[str], expected: str) -> None:
    result = sweep(outputs, tmp_path, *overrides)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert _all_runs(outputs) == []
    assert [r.data.tags["sweep.role"] for r in _all_runs(outputs, ViewType.DELETED_ONLY)] == ["parent"]


def test_a_named_sweep_keeps_its_parent_when_a_later_invocation_fails_to_start(tmp_path: Path,
                                                                               outputs: Path) -> None:
    first = sweep(outputs, tmp_path, "sweep_name=kept", "seed=1")
    assert first.returncode == 0, first.stderr[-3000:]
    _, before, _ = parent_and_children(outputs)
    failed = sweep(outputs, tmp_path, "sweep_name=kept", "model.activaton=relu,tanh")
    assert failed.returncode != 0

    # The refused invocation ran no job: the finished sweep is left as it was, summary and command line.
    _, parent, children = parent_and_children(outputs)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.name"] == "kept"
    assert parent.data.tags == before.data.tags
    assert [c.info.status for c in children] == ["FINISHED"]


def test_skip_finished_without_a_sweep_name_is_one_clear_error(tmp_path: Path, outputs: Path) -> None:
    result = sweep(outputs, tmp_path, "skip_finished=true", "seed=1,2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        ("error: skip_finished=true needs sweep_name=<name>, so the sweep's earlier runs can be found; "
         "use the same sweep_name as the sweep you are extending.")
    ]
    assert not (outputs / "mlflow.db").exists() and not (outputs / "runs").exists()


def test_extending_a_named_grid_trains_only_the_new_points(tmp_path: Path, outputs: Path) -> None:
    first = sweep(outputs, tmp_path, "sweep_name=ext", "optimizer.lr=1e-3,1e-2")
    assert first.returncode == 0, first.stderr[-3000:]
    _, _, before = parent_and_children(outputs)

    # Same points spelled differently, plus one new value.
    wider = sweep(outputs, tmp_path, "sweep_name=ext", "skip_finished=true", "optimizer.lr=0.001,0.01,0.1")
    assert wider.returncode == 0, wider.stderr[-3000:]
    assert wider.stdout.count("Skipping") == 2

    _, parent, after = parent_and_children(outputs)
    assert parent.info.status == "FINISHED"
    new = [c for c in after if c.info.run_id not in {b.info.run_id for b in before}]
    assert [c.data.params["optimizer.lr"] for c in new] == ["0.1"]
    assert (parent.data.metrics["sweep/jobs"], parent.data.metrics["sweep/skipped_jobs"]) == (3, 2)
    assert parent.data.metrics["sweep/children"] == 3


def test_a_terminated_sweep_closes_its_parent(tmp_path: Path, outputs: Path) -> None:
    """SIGTERM (a cluster's time limit, `kill`) skips Hydra's on_multirun_end; the parent still ends."""
    # The pacer makes each epoch last a second, so job 0 is still training when the signal lands on any
    # machine (checkpoint files are no sign of that: they are written at most every few seconds).
    command = [sys.executable, "-m", "experiments", "train", "-m", f"paths.output_dir={outputs}", *QUICK,
               "trainer.max_epochs=500", "+callbacks.pacer._target_=tests.e2e.epoch_pacer.EpochPacer",
               "+callbacks.pacer.seconds=1", "seed=1,2,3"]
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(project_root())  # the pacer is importable from the repository root
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not list(outputs.glob("multiruns/*/*/0/pacer_started")):  # job 0 is training
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
        time.sleep(1)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode != 0

    _, parent, children = parent_and_children(outputs)
    assert parent.info.status == "FAILED", output[-3000:]
    assert "stopped before it ended" in parent.data.tags["failure_reason"]
    assert [c.info.status for c in children] == ["KILLED"]


def _assert_complete_children(client: MlflowClient, children: list[Any], seeds: list[str]) -> None:
    assert sorted(c.data.params["seed"] for c in children) == sorted(seeds)  # none missing, none twice
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["runtime.threads"] == "1"  # parallel jobs do not fight over cores
        history = client.get_metric_history(child.info.run_id, "val/loss")
        assert sorted(m.step for m in history) == [0, 1]
        assert "test/loss" in child.data.metrics


def test_joblib_runs_six_jobs_on_two_workers_under_one_parent_and_exits_when_done(tmp_path: Path,
                                                                                   outputs: Path) -> None:
    seeds = ["1", "2", "3", "4", "5", "6"]
    command = [sys.executable, "-m", "experiments", "train", "-m", f"paths.output_dir={outputs}", *QUICK,
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"seed={','.join(seeds)}"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Sweep parent run"):  # the sweep's last words
            break
    # The joblib pool's idle workers must be stopped at exit, not waited for until they time out (300 s).
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    client, parent, children = parent_and_children(outputs)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.launcher"] == "joblib"
    _assert_complete_children(client, children, seeds)


def test_submitit_local_runs_jobs_as_children_of_one_parent(tmp_path: Path, outputs: Path) -> None:
    result = sweep(outputs, tmp_path, "hydra/launcher=submitit_local", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, children = parent_and_children(outputs)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.launcher"] == "submitit_local"
    _assert_complete_children(client, children, ["1", "2"])


STEPS, METRICS_PER_STEP, PARAMS = 50, 40, 60


def _log_one_run(uri: str, worker: int, start: Any) -> None:
    """What a job does to the store: create the experiment if needed, params, per-step metric batches."""
    from mlflow.entities import Metric, Param

    from experiments.tracking.store import prepare_experiment

    start.wait()
    experiment_id = prepare_experiment(uri, "stress")
    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id, run_name=f"worker-{worker}").info.run_id
    client.log_batch(run_id, params=[Param(f"p{i}", str(i)) for i in range(PARAMS)])
    for step in range(STEPS):
        now = int(time.time() * 1000)
        metrics = [Metric(f"m{i}", step * 0.5, now, step) for i in range(METRICS_PER_STEP)]
        client.log_batch(run_id, metrics=metrics)
    client.set_terminated(run_id, "FINISHED")


def test_parallel_processes_lose_nothing_in_one_new_sqlite_store(tmp_path: Path) -> None:
    """Four processes open a store that does not exist yet and log at the same time (measured: MLflow's
    20 s sqlite busy timeout absorbs the contention, so no retry layer is needed; the store lock
    prevents the schema-migration race)."""
    uri = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_log_one_run, args=(uri, worker, start)) for worker in range(4)]
    for process in workers:
        process.start()
    start.set()
    for process in workers:
        process.join(timeout=300)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("stress").experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"worker-{w}" for w in range(4)]
    for run in runs:
        assert run.info.status == "FINISHED" and len(run.data.params) == PARAMS
        for i in range(METRICS_PER_STEP):
            assert [m.step for m in client.get_metric_history(run.info.run_id, f"m{i}")] == list(range(STEPS))
