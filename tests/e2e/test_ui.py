"""`experiments ui`: a real MLflow UI process, or one sentence when its port is taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.tracking.store import prepare_experiment
from tests.conftest import free_port, run_cli, store_uri, wait_for_http

pytestmark = pytest.mark.e2e


def test_a_port_in_use_is_refused_in_one_sentence_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        result = run_cli(["ui", "--port", str(port), "--tracking-uri", store_uri(tmp_path / "outputs")],
                         cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is in use (another MLflow UI?); pick another with --port N."
    )
    assert result.stdout == ""  # no URL printed for a server that never starts
    assert not (tmp_path / "outputs").exists()  # and no store created for it


def test_on_a_free_port_the_ui_serves_the_store(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    prepare_experiment(store_uri(outputs), "seed_random")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui = subprocess.Popen([sys.executable, "-m", "experiments", "ui", "--port", str(port), "--tracking-uri",
                           store_uri(outputs)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", ui, 180)
        time.sleep(3)  # MLflow starts its job runner beside the server; give it time to show
        processes = subprocess.run(["ps", "-s", str(ui.pid), "-o", "rss=,args="], capture_output=True,
                                   text=True, check=True).stdout.splitlines()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        out, _ = ui.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in out
    # Only the UI: no job runner or huey consumers for GenAI features, a fraction of their memory.
    assert not [line for line in processes if "mlflow.server.jobs" in line or "huey" in line], processes
    assert sum(int(line.split()[0]) for line in processes) < 1024 * 1024, processes  # KiB: under 1 GiB
