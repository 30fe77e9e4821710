"""A population's writing done in a worker process while the main process opens the next members: each
job's Hydra files (`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`, rendered from plain values as
`OmegaConf.save` renders them), each member's opening MLflow record (`tracking.run_record.RunRecord`) and,
while the population trains, the members' epoch metrics. Opening a population one member after another
leaves a second core idle, and so does its training (one thread for small networks), so the worker may
fall behind until training ends.

What a job's writing produced is waited for before its run closes: a file or record that could not be
written fails its job, as it would fail a run alone; a worker that died is replaced by writing it here
(writing a file or a record twice leaves the same file or run). Off with
`EXPERIMENTS_NO_SPEEDUPS=population_writer`; not used on one core or for few members."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from experiments.timing import mark
from experiments.tracking.run_record import RunRecord, write_metrics, write_run_record
from experiments.worker_process import pool_options

# Below this, the worker's start-up (~1.5 s of MLflow's imports, on the other core) buys little.
MIN_MEMBERS = 8


class PopulationWriter:
    """`submit_files` and `submit_record` as a job opens; `wait_for` each before its run closes."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, **pool_options())
        self._queued: list[Future] = []
        self._pool.submit(_ready)  # started now: its imports overlap the first members' opening
        mark("population_writer_start")

    def submit_files(self, folder: Path, files: dict[str, Any]) -> Future:
        """`files`: name → a config as plain values (`OmegaConf.to_container`), saved as YAML in `folder`."""
        return self._submit(save_yaml_files, folder, files)

    def submit_record(self, uri: str, run_id: str, record: RunRecord) -> Future:
        return self._submit(_write_record, uri, run_id, record)

    def submit_metrics(self, uri: str, run_id: str, metrics: list[Any]) -> Future:
        """`metrics`: MLflow `Metric`s of the run."""
        return self._submit(_with_client, uri, write_metrics, run_id, metrics)

    def submit_artifact(self, uri: str, run_id: str, path: Path, artifact_path: str,
                        here: Callable[[], None]) -> Callable[[], None]:
        """The file at `path` logged to the run (this worker knows the run's artifact location from its
        record; the main process would read the run back to find it). Returns what waits for it (`here`:
        the same logging in the caller's process, should the worker die)."""
        written = self._submit(_with_client, uri, _log_artifact, run_id, str(path), artifact_path)
        return functools.partial(wait_for, written, here)

    def idle(self) -> bool:
        """Whether everything submitted so far is written."""
        self._queued = [future for future in self._queued if not future.done()]
        return not self._queued

    def _submit(self, work: Any, *args: Any) -> Future:
        try:
            future = self._pool.submit(work, *args)
            self._queued.append(future)
            return future
        except BrokenProcessPool as err:  # its worker died earlier: the waiting side writes it here
            refused: Future = Future()
            refused.set_exception(err)
            return refused

    def close(self) -> None:
        """Once every job is closed: what is still queued (the files of a job that failed as it opened) is written."""
        self._pool.shutdown(wait=True)


def save_yaml_files(folder: Path, files: dict[str, Any]) -> None:
    """Each config as `OmegaConf.save` writes it (the same text: it renders a config's plain values)."""
    from experiments.speedups import render_yaml

    folder.mkdir(parents=True, exist_ok=True)
    for name, values in files.items():
        (folder / name).write_text(render_yaml(values), encoding="utf-8")


def wait_for(written: Future, here: Callable[[], None]) -> None:
    """Return once the worker's writing is done; raise what stopped it (a store's refusal). A worker that
    died (killed, out of memory) is replaced by `here`: the same writing, in this process."""
    try:
        written.result()
    except BrokenProcessPool:
        here()
    except KeyboardInterrupt:
        if not (written.done() and isinstance(written.exception(), KeyboardInterrupt)):
            raise  # this process's own
        here()  # the worker's, caught mid-task (its Ctrl-C is ignored, but a signal can be sent to it alone)


_CLIENTS: dict[str, Any] = {}


def _write_record(uri: str, run_id: str, record: RunRecord) -> None:
    from experiments.timing import marked

    with marked("member_record_write"):
        _with_client(uri, write_run_record, run_id, record)


def _log_artifact(client: Any, run_id: str, path: str, artifact_path: str) -> None:
    client.log_artifact(run_id, path, artifact_path)


def _with_client(uri: str, work: Callable[..., None], *args: Any) -> None:
    """In the worker: `work(client, *args)` with one client per store, as a run's logger holds one."""
    from mlflow import MlflowClient

    if uri not in _CLIENTS:
        _CLIENTS[uri] = MlflowClient(uri)
    try:
        work(_CLIENTS[uri], *args)
    except Exception as err:
        import requests

        from experiments.tracking.server import server_unreachable

        if server_unreachable(err):  # what it was raised from does not cross processes: said in its type
            raise requests.exceptions.ConnectionError(str(err)) from None
        raise


def _ready() -> None:
    """The worker's first task: load what writing needs."""
    import mlflow.store.tracking.sqlalchemy_store  # what the first record's store opens with
    import mlflow.tracking  # noqa: F401
    import omegaconf  # noqa: F401
    import yaml  # noqa: F401


def population_writer_for(members: int) -> PopulationWriter | None:
    from experiments.speedups import enabled

    if not enabled("population_writer") or members < MIN_MEMBERS or (os.cpu_count() or 1) < 2:
        return None
    try:
        return PopulationWriter()
    except OSError:  # no process can be started here (a limit, a sandbox): everything is written in this one
        return None
