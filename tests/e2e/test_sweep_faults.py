"""Faults the way databases are tested: a joblib worker of a sweep, then whole sweep processes, killed with
SIGKILL at random moments, then the sweep rerun; afterwards every invariant a user relies on is checked.
The single-machine set-up: an Optuna study and an MLflow store, both sqlite files, with trial heartbeats."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import FAST, run_cli, store_uri
from tests.sweep_invariants import check_after_faults, sweep_children

pytestmark = pytest.mark.e2e

STUDY = ["sweep=optuna", "hydra.sweeper.params=null", "optimizer.lr=interval(1e-4,1e-1)",
         "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.study_name=faults", "logger.experiment_name=faults",
         "hydra.sweeper.pruner=none",  # a PRUNED trial would not count towards the target
         "data.options.n_samples=300", "trainer.max_epochs=8", "logger.log_model=false", *FAST]


def _children(outputs: Path) -> list:
    return sweep_children(store_uri(outputs), "faults")


def _start_when_running(outputs: Path, cwd: Path, extra: list[str]) -> subprocess.Popen:
    """Start the sweep and return once one of its trials has opened a run."""
    earlier = {run.info.run_id for run in _children(outputs)}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen([sys.executable, "-m", "experiments", "train", f"paths.output_dir={outputs}",
                                *STUDY, *extra], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(run.info.status == "RUNNING" and run.info.run_id not in earlier for run in _children(outputs)):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep never opened a run"
        time.sleep(0.2)
    return process


def _kill_at_random(outputs: Path, cwd: Path, rng: random.Random) -> None:
    """SIGKILL the whole sweep a random moment after a trial opened its run (inside the trial, while
    metrics are written, or as the next trial's run is created)."""
    process = _start_when_running(outputs, cwd, ["hydra.sweeper.n_trials=20"])
    time.sleep(rng.uniform(0.0, 1.0))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _joblib_workers(pid: int) -> list[int]:
    """The joblib (loky) worker processes of the sweep process `pid`."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"popen_loky" in command:
            workers.append(int(stat.parent.name))
    return workers


def _kill_a_joblib_worker(outputs: Path, cwd: Path, rng: random.Random) -> None:
    """A sweep whose trials run two at a time in joblib workers: SIGKILL one worker a random moment after a
    trial opened its run. The sweep itself goes on to its end."""
    process = _start_when_running(outputs, cwd, ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2",
                                                 "hydra.sweeper.n_trials=4"])
    time.sleep(rng.uniform(0.0, 1.0))
    workers = _joblib_workers(process.pid)
    assert workers, "the sweep runs no joblib worker"
    os.kill(rng.choice(workers), signal.SIGKILL)
    assert process.wait(timeout=300) == 0


def test_killed_sweeps_leave_no_run_running_and_a_rerun_completes_the_study(tmp_path: Path, outputs: Path) -> None:
    rng = random.Random(7)
    _kill_a_joblib_worker(outputs, tmp_path, rng)
    kills = 2
    for _ in range(kills):
        _kill_at_random(outputs, tmp_path, rng)
    time.sleep(3.5)  # the heartbeat grace period (3 beats of 1 s): the killed trials are now stale
    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{outputs / 'optuna.db'}")
    complete = sum(t.state.name == "COMPLETE" for t in study.trials)
    target = max(6, complete + 2)  # COMPLETE trials the study must reach: the rerun always has some to run
    result = run_cli(["train", f"paths.output_dir={outputs}", *STUDY,
                      f"hydra.sweeper.n_trials={target - complete}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # A kill between asking a trial and its first heartbeat leaves a trial that never beat: the rerun gave
    # it one beat as it started, so the next sweep on the study (here one that asks for nothing more)
    # finds it stale.
    time.sleep(3.5)
    held = len(optuna.load_study(study_name="faults", storage=f"sqlite:///{outputs / 'optuna.db'}").trials)
    again = run_cli(["train", f"paths.output_dir={outputs}", *STUDY, f"hydra.sweeper.total_trials={held}"],
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]

    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{outputs / 'optuna.db'}")
    # The joblib worker's death fails its batch of two.
    check_after_faults(study, store_uri(outputs), "faults", target, kills + 2, tmp_path / "report")
