"""A population's members' opening records (`run_record.RunRecord`) written in a worker process while the
main process opens the next members: a record is a third of a member's opening, and opening a
population one member after another leaves a second core idle. A member's record is waited for before
its run closes, so a record that could not be written fails its job, as it would fail a run alone; a
worker that died is replaced by writing the record here (a record written twice is the same record).
Off with `EXPERIMENTS_NO_SPEEDUPS=record_writer`; not used on one core or for few members."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from experiments.tracking.run_record import RunRecord, write_run_record

# Below this, the worker's start-up (~1.5 s of MLflow's imports, on the other core) buys little.
MIN_MEMBERS = 8


class RecordWriter:
    """`submit` a member's record as its run opens; `wait` for it before the run closes."""

    def __init__(self) -> None:
        # spawn: a fork of a process holding torch's thread pools is unsafe; the child imports MLflow only.
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(_ready)  # started now: its imports overlap the first members' opening

    def submit(self, uri: str, run_id: str, record: RunRecord) -> Future:
        try:
            return self._pool.submit(_write, uri, run_id, record)
        except BrokenProcessPool as err:  # its worker died earlier: `wait_for_record` writes it here
            refused: Future = Future()
            refused.set_exception(err)
            return refused

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def wait_for_record(written: Future, client: Any, run_id: str, record: RunRecord) -> None:
    """Return once the record is in the run; raise what the store said if it refused it."""
    try:
        written.result()
    except BrokenProcessPool:  # the worker died (killed, out of memory): written here instead
        write_run_record(client, run_id, record)


_CLIENTS: dict[str, Any] = {}


def _write(uri: str, run_id: str, record: RunRecord) -> None:
    """In the worker: one client per store, as a run's logger holds one."""
    from mlflow import MlflowClient

    from experiments.timing import marked

    if uri not in _CLIENTS:
        _CLIENTS[uri] = MlflowClient(uri)
    with marked("member_record_write"):
        write_run_record(_CLIENTS[uri], run_id, record)


def _ready() -> None:
    """The worker's first task: load what writing needs."""
    import mlflow.tracking  # noqa: F401


def record_writer_for(members: int) -> RecordWriter | None:
    from experiments.speedups import enabled

    if not enabled("record_writer") or members < MIN_MEMBERS or (os.cpu_count() or 1) < 2:
        return None
    try:
        return RecordWriter()
    except OSError:  # no process can be started here (a limit, a sandbox): the records are written in this one
        return None
