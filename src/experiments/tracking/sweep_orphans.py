"""Child runs a dead process left RUNNING, found and closed FAILED, so no run stays RUNNING forever.

A job closes its own run; a job whose process was killed (SIGKILL, the OOM killer, a lost node) cannot.
When an invocation opens a parent it had before, and when it closes the parent, it closes the RUNNING
children that can no longer be running:
- its own, once all its jobs have returned (the launcher has waited for them);
- those whose Optuna trial the study has marked FAIL (their worker's heartbeat stopped);
- those of an invocation launched on this host by a process that no longer exists.
Each ends FAILED with why as its `failure_reason`. A RUNNING child of a live worker elsewhere is left alone.

One more case: a job that finished (its run FINISHED) while its sweep was killed before telling Optuna,
so the study failed the trial by heartbeat. Its run becomes KILLED, saying so: MLflow and the study then
agree on which trials count.
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
    """(storage, study, trial number) of the children's Optuna trials that ended FAIL."""
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
    tags = run.data.tags
    invocation = tags.get(INVOCATION_TAG)
    if invocation == own_invocation:
        if own_jobs_ended:
            return "its job ended without closing the run (killed, or the tracking server did not answer)"
        return None
    if _trial_key(run) in failed:
        return "its worker stopped (no heartbeat): Optuna marked the trial FAIL"
    here = tags.get(HOST_TAG) == socket.gethostname() and tags.get(PID_TAG, "").isdigit()
    if here and not _process_alive(int(tags[PID_TAG])):
        return f"the sweep process that launched it ({tags[PID_TAG]}) is gone (killed?)"
    return None


def _trial_key(run: Any) -> tuple[str, str, int] | None:
    params = run.data.params
    if "optuna.trial_number" not in params:
        return None
    return params.get("optuna.storage"), params.get("optuna.study_name"), int(params["optuna.trial_number"])


def close_orphaned_children(link: Any, own_invocation: str, own_jobs_ended: bool = False) -> int:
    """Close the parent's children that a dead process left behind; return how many."""
    from mlflow.tracking import MlflowClient

    from experiments.tracking.sweep_summary import search_children

    children = search_children(link.tracking_uri, link.experiment_id, link.parent_run_id)
    running = [run for run in children if run.info.status == "RUNNING"]
    finished_trials = [run for run in children if run.info.status == "FINISHED" and _trial_key(run) is not None]
    if not running and not finished_trials:
        return 0
    failed = _failed_trials(running + finished_trials)
    client = MlflowClient(link.tracking_uri)
    closed = 0
    for run in running:
        reason = _why_orphaned(run, own_invocation, own_jobs_ended, failed)
        if reason is not None:
            client.set_tag(run.info.run_id, FAILURE_REASON_TAG, reason)
            client.set_terminated(run.info.run_id, "FAILED")
            closed += 1
    for run in finished_trials:
        if _trial_key(run) in failed:
            client.set_tag(run.info.run_id, FAILURE_REASON_TAG, "it finished, but its sweep was killed before "
                           "Optuna recorded the result: the trial is FAIL and does not count")
            client.set_terminated(run.info.run_id, "KILLED")
            closed += 1
    if closed:
        print(f"Closed {closed} child run(s) left RUNNING by a job that could not close them (see their "
              "failure_reason).",
              flush=True)
    return closed
