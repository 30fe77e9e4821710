"""Runs and sweeps logged to a real `mlflow server` on 127.0.0.1, as a team or a cluster would share one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, mlflow_server, run_cli

pytestmark = pytest.mark.e2e

QUICK = [*FAST, "trainer.max_epochs=2", "data.options.n_samples=300"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tracking server with its own sqlite store and artifact folder (served through the server)."""
    root = tmp_path_factory.mktemp("server")
    with mlflow_server(root, f"sqlite:///{root / 'server.db'}") as uri:
        yield uri


def _runs(uri: str, experiment_name: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"no experiment {experiment_name!r} on the server"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    return client, client.search_runs([experiment.experiment_id])


def test_a_run_goes_to_the_server_with_its_model_and_nothing_to_the_local_store(server: str, tmp_path: Path,
                                                                                 outputs: Path) -> None:
    result = run_cli(["train", f"paths.output_dir={outputs}", f"logger.tracking_uri={server}",
                      "logger.experiment_name=server-single", *QUICK], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # The summary points at the run in the server's own UI (no `experiments ui` to start).
    assert f"Open it:    {server}/#/experiments/" in result.stdout

    client, runs = _runs(server, "server-single")
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val/loss")) == [0, 1]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {"plots/learning_curve.png"}
    # The model went through the server's artifact proxy, filed under the run's experiment, and loads back.
    (output,) = run.outputs.model_outputs
    assert client.get_logged_model(output.model_id).experiment_id == run.info.experiment_id
    import mlflow
    import numpy as np
    import pandas as pd

    mlflow.set_tracking_uri(server)  # the model comes back through the server's artifact proxy and predicts
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    rows = pd.DataFrame(np.random.default_rng(0).random((4, 8)), columns=[f"x{i}" for i in range(8)])
    assert list(model.predict(rows).columns) == ["prediction", "probability_0", "probability_1"]
    assert not (outputs / "mlflow.db").exists()


def test_a_sweep_logs_its_parent_and_children_to_the_server(server: str, tmp_path: Path, outputs: Path) -> None:
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", f"logger.tracking_uri={server}",
                      "logger.experiment_name=server-sweep", "logger.log_model=false", *QUICK,
                      "model.activation=relu,tanh"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    _, runs = _runs(server, "server-sweep")
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(c.data.params["model.activation"] for c in children) == ["relu", "tanh"]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert not (outputs / "mlflow.db").exists()


def test_a_large_population_records_its_members_on_the_server(server: str, tmp_path: Path, outputs: Path) -> None:
    """From 8 members a worker process writes the members' opening records, here through the server (its
    API and its artifact proxy): every member's run is as complete as the sweep's own writes make it."""
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", f"logger.tracking_uri={server}",
                      "logger.experiment_name=server-population", "logger.log_model=false", *QUICK,
                      "hydra/launcher=population", "optimizer.lr=0.001,0.01", "seed=1,2,3,4"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training 8 runs as one population" in result.stdout

    client, runs = _runs(server, "server-population")
    children = [r for r in runs if r.data.tags.get("sweep.role") == "child"]
    assert len(children) == 8 and {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        assert child.data.params["optimizer.lr"] in ("0.001", "0.01") and "overrides" in child.data.tags
        assert child.inputs.dataset_inputs, child.info.run_name
        files = {a.path for a in client.list_artifacts(child.info.run_id, "config")}
        assert {"config/config.yaml", "config/overrides.yaml"} <= files
        assert {a.path for a in client.list_artifacts(child.info.run_id, "data")} == {"data/columns.txt"}
    assert not (outputs / "mlflow.db").exists()
