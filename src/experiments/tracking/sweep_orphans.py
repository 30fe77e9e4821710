"""Child runs a dead process left RUNNING, found and closed FAILED, so no run stays RUNNING forever.

A job closes its own run; a job whose process was killed (SIGKILL, the OOM killer, a lost node) cannot.
When an invocation opens a parent it had before, and when it closes the parent, it closes the RUNNING
children that can no longer be running:
- its own, once all its jobs have returned (the launcher has waited for them);
- those whose Optuna trial the study has marked FAIL (their worker's heartbeat stopped);
- those of an invocation launched on this host by a process that no longer exists.
Each ends FAILED with why as its `failure_reason`. A RUNNING child of a live worker elsewhere is left alone.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from experiments.tracking.sweep_points import FAILURE_REASON_TAG, HOST_TAG, INVOCATION_TAG, PID_TAG


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _failed_trials(children: list[Any]) -> set[tuple[str, str, int]]:
    """(storage, study, trial number) of the RUNNING children's Optuna trials that ended FAIL."""
    wanted: dict[tuple[str, str], set[int]] = {}
    for run in children:
        params = run.data.params
        if "optuna.trial_number" in params:
            key = (params["optuna.storage"], params["optuna.study_name"])
            wanted.setdefault(key, set()).add(int(params["optuna.trial_number"]))
    failed: set[tuple[str, str, int]] = set()
    for (storage, study_name), numbers in wanted.items():
        try:
            import optuna

            from hydra_plugins.experiments_optuna_sweeper.storage import open_storage

            study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
        except Exception as err:  # noqa: BLE001 - a study that cannot be read decides nothing
            print(f"warning: could not read Optuna study {study_name!r} to check its trials: {err}")
            continue
        failed |= {(storage, study_name, t.number) for t in study.get_trials(deepcopy=False)
                   if t.number in numbers and t.state.name == "FAIL"}
    return failed


def _why_orphaned(run: Any, own_invocation: str, own_jobs_ended: bool, failed: set[tuple[str, str, int]]) -> str | None:
    tags, params = run.data.tags, run.data.params
    invocation = tags.get(INVOCATION_TAG)
    if invocation == own_invocation:
        if own_jobs_ended:
            return "its job's process ended without closing the run (killed?)"
        return None
    if "optuna.trial_number" in params:
        key = (params.get("optuna.storage"), params.get("optuna.study_name"), int(params["optuna.trial_number"]))
        if key in failed:
            return "its worker stopped (no heartbeat): Optuna marked the trial FAIL"
    here = tags.get(HOST_TAG) == socket.gethostname() and tags.get(PID_TAG, "").isdigit()
    if here and not _process_alive(int(tags[PID_TAG])):
        return f"the sweep process that launched it ({tags[PID_TAG]}) is gone (killed?)"
    return None


def close_orphaned_children(link: Any, own_invocation: str, own_jobs_ended: bool = False) -> int:
    """Close the parent's RUNNING children that a dead process left behind; return how many."""
    from mlflow.tracking import MlflowClient

    from experiments.tracking.sweep_summary import search_children

    running = [run for run in search_children(link.tracking_uri, link.experiment_id, link.parent_run_id)
               if run.info.status == "RUNNING"]
    if not running:
        return 0
    failed = _failed_trials(running)
    client = MlflowClient(link.tracking_uri)
    closed = 0
    for run in running:
        reason = _why_orphaned(run, own_invocation, own_jobs_ended, failed)
        if reason is not None:
            client.set_tag(run.info.run_id, FAILURE_REASON_TAG, reason)
            client.set_terminated(run.info.run_id, "FAILED")
            closed += 1
    if closed:
        print(f"Closed {closed} child run(s) left RUNNING by a process that is gone, as FAILED.", flush=True)
    return closed
