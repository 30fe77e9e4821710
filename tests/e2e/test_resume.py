"""Interrupt a real training process with SIGTERM, resume it by run id: one MLflow run, and the same
final weights and metrics as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from experiments.paths import project_root
from tests.conftest import FAST, run_cli, store_uri

pytestmark = pytest.mark.e2e

# Dropout, input noise and a step schedule make the RNG, optimizer and scheduler state matter; the
# pacer makes every epoch last a second, so the interruption lands mid-run on any machine.
RUN = ["data.options.n_samples=3000", "model.dropout=0.2", "regularization.input_noise=0.05", "scheduler=step",
       "optimizer.lr=0.01", "trainer.max_epochs=7", "+callbacks.pacer._target_=tests.e2e.epoch_pacer.EpochPacer",
       "+callbacks.pacer.seconds=1", *FAST]
ENV = {"PYTHONPATH": str(project_root())}  # the pacer is importable from the repository root


def _runs(outputs: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(store_uri(outputs))
    experiments = [e.experiment_id for e in client.search_experiments() if e.name != "Default"]
    return client, client.search_runs(experiments) if experiments else []


def _start(outputs: Path, cwd: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """`experiments train` of RUN in the background, as a user's shell would start it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "experiments", "train", f"paths.output_dir={outputs}", *RUN, *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_until(process: subprocess.Popen, outputs: Path, ready: Callable[[MlflowClient, str], bool],
                never: str) -> tuple[MlflowClient, str]:
    """Poll the running training's MLflow run until `ready(client, run_id)`; fail with `never`."""
    deadline = time.monotonic() + 240
    client, run_id = None, ""
    while True:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, never
        if client is None and list(outputs.glob("runs/*/*/pacer_started")):
            # The training process created the store by now; opening it earlier could race that.
            client, runs = _runs(outputs)
            run_id = runs[0].info.run_id
        if client is not None and ready(client, run_id):
            return client, run_id
        time.sleep(0.02)


def _interrupt_after(epochs: int, outputs: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Start training, wait until the MLflow run holds `epochs` epochs of val/loss, send SIGTERM."""
    process = _start(outputs, cwd)
    _wait_until(process, outputs, lambda client, run_id: len(client.get_metric_history(run_id, "val/loss")) >= epochs,
                "training never reached the epoch to interrupt at")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _final_weights(outputs: Path) -> dict[str, torch.Tensor]:
    (last,) = outputs.glob("runs/*/*/checkpoints/last.ckpt")
    return torch.load(last, map_location="cpu", weights_only=True)["state_dict"]


def test_sigterm_then_resume_continues_the_same_run_and_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path,
) -> None:
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"

    killed = _interrupt_after(2, interrupted, tmp_path)
    assert killed.returncode == 143, killed.stderr[-3000:]
    client, (run,) = _runs(interrupted)
    assert run.info.status == "KILLED"
    assert "Traceback" not in killed.stderr
    command = f"experiments train resume={run.info.run_id} paths.output_dir={interrupted}"
    assert command in killed.stderr, killed.stderr[-2000:]
    stopped_at = len(client.get_metric_history(run.info.run_id, "val/loss"))
    assert 2 <= stopped_at < 7

    # The exact command the console printed, run from another directory.
    resumed = run_cli(command.split()[1:] + FAST, cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming MLflow run {run.info.run_id}" in resumed.stderr

    full = run_cli(["train", f"paths.output_dir={straight}", *RUN], cwd=tmp_path, env=ENV)
    assert full.returncode == 0, full.stderr[-3000:]

    client, (run,) = _runs(interrupted)  # still one run
    assert run.info.status == "FINISHED"
    assert "failure_reason" not in run.data.tags
    assert int(run.data.tags["resumed_from_epoch"]) >= 2
    for key in ("val/loss", "train/loss", "val/acc"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(range(7)), key

    straight_client, (reference,) = _runs(straight)
    for key in ("val/loss", "train/loss"):
        resumed_curve = [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
        straight_curve = [m.value for m in sorted(straight_client.get_metric_history(reference.info.run_id, key),
                                                  key=lambda m: m.step)]
        assert resumed_curve == straight_curve, key
    finals = {k: v for k, v in reference.data.metrics.items() if k.startswith(("train/", "val/", "test/", "gap/"))}
    assert finals and {k: run.data.metrics[k] for k in finals} == finals

    resumed_weights, straight_weights = _final_weights(interrupted), _final_weights(straight)
    assert resumed_weights.keys() == straight_weights.keys()
    for name, tensor in straight_weights.items():
        assert torch.equal(resumed_weights[name], tensor), name


def test_a_hard_killed_run_resumes_from_its_last_written_checkpoint_without_logging_epochs_twice(
    tmp_path: Path,
) -> None:
    """SIGKILL leaves no chance to write the checkpoint held in memory: the run has logged epochs past
    its last checkpoint file. Resuming replays those epochs and logs each of them once."""
    outputs = tmp_path / "killed"
    # Checkpoint files at most every 4 s, metrics every 2 s, epochs of 1 s: metrics run ahead.
    process = _start(outputs, tmp_path, ("checkpoint_every_s=4",))
    seen = {"logged": 0}

    def metrics_ahead(client: MlflowClient, run_id: str) -> bool:
        lasts = list(outputs.glob("runs/*/*/checkpoints/last.ckpt"))
        if not lasts:
            return False
        seen["logged"] = len(client.get_metric_history(run_id, "val/loss"))
        return seen["logged"] >= torch.load(lasts[0], map_location="cpu", weights_only=True)["epoch"] + 3

    client, run_id = _wait_until(process, outputs, metrics_ahead, "the metrics never ran ahead of the checkpoint")
    process.kill()
    process.communicate(timeout=60)
    (last,) = outputs.glob("runs/*/*/checkpoints/last.ckpt")
    written = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert written < seen["logged"] - 1  # the kill caught the run with logged epochs past its last checkpoint

    resumed = run_cli(["train", f"resume={run_id}", f"paths.output_dir={outputs}", *FAST], cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    client, (run,) = _runs(outputs)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["resumed_from_epoch"]) == written + 1
    for key in ("val/loss", "train/loss", "val/acc", "gap/loss"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(7)), (key, sorted(steps))
