"""Shared test helpers: compose the real configs into a temp dir, run the real CLI, read the real store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict

from experiments.paths import config_dir, register_resolvers

# Quiet, fast defaults for every test run: no progress bar redraws.
FAST = ["callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]


def store_uri(output_dir: Path) -> str:
    return f"sqlite:///{output_dir.resolve() / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may write to the developer's store or inherit a subcommand from the environment.
    MLflow's `set_tracking_uri` (Lightning's logger calls it) exports the store it was given as
    MLFLOW_TRACKING_URI: removed again after each test, so the next one does not follow it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EXPERIMENTS_SUBCOMMAND", raising=False)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


def compose_train_config(outputs: Path, overrides: list[str] | None = None, run_name: str = "test") -> DictConfig:
    """The real `conf/train.yaml` with overrides, outputs redirected to `outputs`, Hydra state set so
    `${hydra:...}` interpolations resolve as in a real run."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"paths.output_dir={outputs}", *FAST, *(overrides or [])],
            return_hydra_config=True,
        )
    run_dir = outputs / "runs" / run_name
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def compose_cfg(outputs: Path) -> Iterator:
    yield lambda overrides=None: compose_train_config(outputs, overrides)
    GlobalHydra.instance().clear()


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m experiments …` as a user would, in its own process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None) if "MLFLOW_TRACKING_URI" not in (env or {}) else None
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args], check=False,
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def parent_and_children(outputs: Path) -> tuple[MlflowClient, Any, list[Any]]:
    """The one parent run in the store and its children; fails if there are several parents."""
    client = MlflowClient(store_uri(outputs))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    parents = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1, [(run.info.run_name, run.info.status) for run in parents]
    parent = parents[0]
    children = [run for run in runs if run is not parent]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id, child.info.run_name
        assert child.data.tags["sweep"] == parent.info.run_id
        assert child.info.experiment_id == parent.info.experiment_id
    return client, parent, children


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, seconds: float) -> None:
    """Poll `url` until it answers 200; fail if `process` (the server) exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server behind {url} exited early"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@contextmanager
def mlflow_server(root: Path, backend_store_uri: str, workers: int = 1, port: int | None = None) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (artifacts through its proxy, into `root`), as the README's
    team command starts it (without MLflow's GenAI job runner); its URL, stopped at the end. A given
    `port` starts it again where an earlier one stood."""
    import shutil
    import signal

    port = port or free_port()
    mlflow_bin = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", backend_store_uri,
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", process, 180)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)

