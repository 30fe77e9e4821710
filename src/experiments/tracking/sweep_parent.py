"""One MLflow parent run per multirun, opened by a Hydra Callback in the launching process.

`on_multirun_start` runs before the sweeper and launcher exist: it creates (and migrates) the store and
experiment once, so parallel jobs never race on a new sqlite file, opens or reopens the parent run and
writes its id into the sweep dir, where every job finds it (`sweep_job.join_sweep_parent`).
A sweep with a stable identity (`sweep_name`, or an Optuna study: storage + study name) reuses its
parent, so extending it, resuming it, or running several workers of one study groups under one parent.

Hydra calls `on_multirun_end` only when the sweeper returns; when it raises (Hydra's basic sweeper
raises the first failed job's error) or the process gets SIGTERM/Ctrl-C, an atexit hook closes the
parent as FAILED instead, so it is never left RUNNING by a sweep that stopped. A sweep that failed
before any job opened a run (a misspelled override fails every job) deletes the parent it created
rather than leave an empty FAILED run behind.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.tracking.server import describe_tracking_error
from experiments.tracking.sweep_description import (
    SweepConfigError,
    objective_mode,
    parent_name,
    parent_tags,
    search_space,
    sweep_identity,
)
from experiments.tracking.sweep_job import SweepLink, objective_names, read_job_records, record_job
from experiments.tracking.sweep_orphans import close_orphaned_children
from experiments.tracking.sweep_points import INVOCATION_TAG, NAME_TAG, PARENT_TAG, ROLE_TAG, SWEEP_TAG
from hydra_plugins.experiments_optuna_sweeper.jobs import job_failure

# On the parent, INVOCATION_TAG is the latest invocation that opened it: a named sweep's or Optuna
# study's parent may be joined by another worker, and the one that created it must then not delete it.


@dataclass(frozen=True)
class OpenSweep:
    link: SweepLink
    sweep_dir: str
    invocation: str
    metric: str
    mode: str
    created: bool  # this invocation created the parent (else it reopened an existing one)
    # A reopened parent as it was (status and the tags this invocation overwrote), restored when this
    # invocation fails before running any job: a refused rerun must not turn a finished sweep FAILED.
    previous_status: str | None = None
    previous_tags: tuple[tuple[str, str | None], ...] = ()


class SweepParentCallback(Callback):
    """Registered in `hydra.callbacks`; see the module docstring."""

    def __init__(self) -> None:
        self._open: OpenSweep | None = None  # only ever set in the launching process
        # Names this invocation's job records, so a reused sweep dir (a resumed Optuna sweep, two workers
        # sharing one) never mixes them up; travels to the jobs with the pickled callback.
        self._invocation: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("logger") is None or not config.logger.get("enabled", True):
            return
        invocation = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        # Hydra turns an exception raised here into a warning and sweeps on, ungrouped; so say what is
        # wrong and stop before any job starts (SystemExit passes through Hydra's handlers).
        try:
            self._open = _retry_transient(lambda: open_sweep_parent_run(config, invocation))
        except SweepConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except Exception as err:  # noqa: BLE001 — any tracking failure stops the sweep with its reason
            print(f"error: could not open the sweep's MLflow parent run ({describe_tracking_error(err)}); check "
                  "logger.tracking_uri and, for a server, that it is up.", file=sys.stderr)
            sys.exit(1)
        self._invocation = invocation
        atexit.register(self._close_stopped_sweep)
        _exit_cleanly_on_sigterm()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._open is not None:
            opened, self._open = self._open, None
            close_sweep_parent_run(opened)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self._invocation is None:  # not a sweep, or one that tracks nothing
            return
        status, error = "COMPLETED", None
        if job_return.status != JobStatus.COMPLETED:
            failure = job_failure(job_return)
            status = "PRUNED" if type(failure).__name__ == "TrialPruned" else "FAILED"
            error = f"{type(failure).__name__}: {failure}"
        record_job(str(config.hydra.sweep.dir), self._invocation, int(config.hydra.job.num),
                   list(config.hydra.overrides.task), status, error)

    def _close_stopped_sweep(self) -> None:
        if self._open is not None:
            opened, self._open = self._open, None
            close_sweep_parent_run(opened, stopped="The sweep stopped before it ended (a job failed and the "
                                                   "sweeper gave up, or the sweep was interrupted).")

    def __getstate__(self) -> dict[str, Any]:
        return {"_open": None, "_invocation": self._invocation}  # jobs elsewhere never close the parent


def _retry_transient(action: Callable[[], OpenSweep], attempts: int = 3) -> OpenSweep:
    """A tracking server that is still starting, or a one-off client error (MLflow's telemetry thread
    edits os.environ while `requests` reads it), should not cost the whole sweep."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except SweepConfigError:
            raise
        except Exception:
            if attempt == attempts:
                raise
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (a cluster's or a user's kill) normally ends Python without atexit hooks; turn it into
    SystemExit so the parent is closed. Only when nobody installed a handler already."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _store_lock(uri: str) -> Any:
    """The lock `prepare_experiment` uses: one launching process at a time finds-or-creates a parent."""
    import contextlib

    from experiments.tracking.store import sqlite_path

    db = sqlite_path(uri)
    if db is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(str(db) + ".lock", timeout=300)


def _find_parents(client: Any, experiment_id: str, identity: dict[str, str]) -> list[Any]:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'parent'",
                              max_results=50000)
    found = [run for run in runs if all(run.data.tags.get(k) == v for k, v in identity.items())]
    return sorted(found, key=lambda run: (run.info.start_time or 0, run.info.run_id))


def _find_or_create_parent(client: Any, experiment_id: str, identity: dict[str, str], name: str,
                           tags: dict[str, str]) -> tuple[str, Any]:
    """(run id, the reopened run as it was, or None when created). Under the sqlite lock no two workers
    create one; on a server, two racing workers may both create, and the later one deletes its own and
    joins the older parent."""
    if identity:
        found = _find_parents(client, experiment_id, identity)
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id, found[0]
    run_id = client.create_run(experiment_id, run_name=name, tags={**tags, **identity}).info.run_id
    if identity:
        oldest = _find_parents(client, experiment_id, identity)[0]
        if oldest.info.run_id != run_id:
            client.delete_run(run_id)
            client.update_run(oldest.info.run_id, status="RUNNING")
            return oldest.info.run_id, oldest
    return run_id, None


def open_sweep_parent_run(config: DictConfig, invocation: str) -> OpenSweep:
    """Create the store and experiment if needed, open (or reopen) the parent, tell the jobs its id."""
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    from experiments.tracking.store import prepare_experiment, resolve_tracking_uri

    identity = sweep_identity(config)
    uri = resolve_tracking_uri(config.logger.get("tracking_uri"), config.paths.output_dir)
    experiment_name = str(config.logger.experiment_name)
    experiment_id = prepare_experiment(uri, experiment_name)
    sweep_dir = str(Path(str(config.hydra.sweep.dir)).absolute())
    space = search_space(config)
    tags = parent_tags(config, sweep_dir, space)
    client = MlflowClient(uri)
    with _store_lock(uri):
        run_id, before = _find_or_create_parent(client, experiment_id, identity,
                                                parent_name(config, identity, sweep_dir), tags)
        client.set_tag(run_id, INVOCATION_TAG, invocation)  # under the lock: see _delete_empty_parent
    # A reopened parent shows the latest invocation's command line and search space.
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**tags, SWEEP_TAG: run_id}.items()])
    link = SweepLink(tracking_uri=uri, experiment_id=experiment_id, experiment_name=experiment_name,
                     parent_run_id=run_id, sweep_name=identity.get(NAME_TAG), search_keys=tuple(space),
                     invocation=invocation, host=socket.gethostname(), pid=os.getpid())
    link.write(sweep_dir)
    if before is not None:  # a rerun: runs an earlier, dead invocation left RUNNING end FAILED now
        close_orphaned_children(link, own_invocation=invocation)
    state = "continued" if before is not None else "new"
    print(f"Sweep parent run: {run_id} ({state}, experiment {experiment_name!r})", flush=True)
    overwritten = (*tags, INVOCATION_TAG)
    return OpenSweep(link=link, sweep_dir=sweep_dir, invocation=invocation,
                     metric=objective_names(config)[0], mode=objective_mode(config), created=before is None,
                     previous_status=before.info.status if before is not None else None,
                     previous_tags=tuple((k, before.data.tags.get(k)) for k in overwritten) if before else ())


def _summary_artifacts(sweep_dir: str) -> list[tuple[Path, str]]:
    artifacts = [(Path(sweep_dir) / "multirun.yaml", "sweep")]
    try:
        from hydra_plugins.experiments_optuna_sweeper.summary_files import optuna_summary_files
    except ImportError:
        optuna_files: list[Path] = []
    else:
        optuna_files = optuna_summary_files(sweep_dir)
    artifacts += [(path, "optuna") for path in optuna_files]
    return [(path, folder) for path, folder in artifacts if path.is_file()]


def close_sweep_parent_run(opened: OpenSweep, stopped: str | None = None) -> None:
    """Record the summary and end the parent: FAILED when a job failed or the sweep stopped, else FINISHED.
    Never raises: a sweep's own outcome must not be hidden by a tracking error at the very end."""
    from experiments.tracking.sweep_summary import child_runs, record_summary, search_children, summarize

    link = opened.link
    status = "FAILED"
    try:
        close_orphaned_children(link, own_invocation=opened.invocation, own_jobs_ended=True)
        children = child_runs(search_children(link.tracking_uri, link.experiment_id, link.parent_run_id),
                              opened.metric, link.search_keys)
        records = read_job_records(opened.sweep_dir, opened.invocation)
        summary = summarize(children, records, opened.metric, opened.mode)
        reason = stopped
        if reason is None and summary.failed_jobs:
            reason = f"{summary.failed_jobs} of {summary.jobs} jobs failed."
        status = "FAILED" if reason else "FINISHED"
        if status == "FAILED" and summary.children == 0 and _delete_empty_parent(opened):
            print(f"Sweep parent run {link.parent_run_id} deleted: the sweep failed before any job opened "
                  "a run.", flush=True)
            return
        if status == "FAILED" and not records and _restore_reopened_parent(opened):
            print(f"Sweep parent run {link.parent_run_id} left as it was ({opened.previous_status}): this "
                  "invocation failed before running any job.", flush=True)
            return
        record_summary(link.tracking_uri, link.parent_run_id, summary, status, reason,
                       _summary_artifacts(opened.sweep_dir))
        print(f"Sweep parent run {link.parent_run_id} {status}: {summary.headline()}.", flush=True)
    except Exception as err:  # noqa: BLE001 — still end the run below
        print(f"warning: could not record the sweep summary on parent run {link.parent_run_id}: "
              f"{describe_tracking_error(err)}",
              file=sys.stderr)
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(link.tracking_uri).set_terminated(link.parent_run_id, status)
        except Exception as again:  # noqa: BLE001
            print(f"warning: parent run {link.parent_run_id} may be left RUNNING: {describe_tracking_error(again)}",
                  file=sys.stderr)


def _restore_reopened_parent(opened: OpenSweep) -> bool:
    """Put a reopened parent back as it was before this invocation; True when it was one."""
    from mlflow.tracking import MlflowClient

    if opened.created or opened.previous_status is None:
        return False
    client, run_id = MlflowClient(opened.link.tracking_uri), opened.link.parent_run_id
    for key, value in opened.previous_tags:
        if value is None:
            client.delete_tag(run_id, key)
        else:
            client.set_tag(run_id, key, value)
    if opened.previous_status == "RUNNING":  # another worker's sweep on it is still going
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, opened.previous_status)
    return True


def _delete_empty_parent(opened: OpenSweep) -> bool:
    """Delete the parent when this invocation created it and no child run was ever attached (deleted
    children count too): an empty FAILED run only clutters the experiment. A parent that another
    invocation has reopened since (same sweep_name or Optuna study) is kept, as its jobs may be about to
    attach; on a sqlite store the lock makes that check and the delete one step. True when deleted."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    link = opened.link
    if not opened.created:
        return False
    client = MlflowClient(link.tracking_uri)
    with _store_lock(link.tracking_uri):
        if client.get_run(link.parent_run_id).data.tags.get(INVOCATION_TAG) != opened.invocation:
            return False
        children = f"tags.`{PARENT_TAG}` = '{link.parent_run_id}'"
        if client.search_runs([link.experiment_id], filter_string=children, run_view_type=ViewType.ALL,
                              max_results=1):
            return False
        client.set_terminated(link.parent_run_id, "FAILED")  # a restored run shows how it ended
        client.delete_run(link.parent_run_id)
    return True
