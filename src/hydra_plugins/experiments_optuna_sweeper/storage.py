"""The study's storage: where it lives, how it is opened (with heartbeats) and locked.

The package's public storage interface: the training side resolves a sweep's storage URL through it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SweeperConfigError

if TYPE_CHECKING:  # Hydra imports this module on every start (its plugin scan): Optuna loads when used
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

# Concurrent workers and jobs write to one sqlite file; wait for its lock rather than fail.
_SQLITE_TIMEOUT_S = 120


def grace_period_s(interval_s: int) -> int:
    # Three missed beats: a beat can wait behind another process's sqlite write lock.
    return 3 * interval_s


def report_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """The storage's `failed_trial_callback`: say which trial was failed, and why."""
    log.warning("Trial %d was RUNNING without a heartbeat (its sweep stopped): marked FAIL.", trial.number)


def resolve_storage_url(storage: str | None, cwd: str) -> str:
    """An RDB URL whose sqlite path is absolute, so jobs running in other dirs open the same file."""
    if storage is None:
        return f"sqlite:///{Path(cwd).resolve() / 'outputs' / 'optuna.db'}"
    prefix = "sqlite:///"
    if storage.startswith(prefix):
        path = Path(storage[len(prefix) :])
        if str(path) in ("", ":memory:"):
            raise SweeperConfigError(
                "hydra.sweeper.storage must be a file, not in-memory sqlite: jobs and later runs must reach it."
            )
        if not path.is_absolute():
            path = Path(cwd) / path
        return f"{prefix}{path.resolve()}"
    return storage


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def open_storage(url: str, heartbeat_interval_s: int = 0) -> optuna.storages.RDBStorage:
    """The study's storage; with a heartbeat interval (the sweeper's), one that can tell trials of a
    dead sweep (no recent heartbeat) from those of a live one."""
    import optuna

    kwargs: dict[str, Any] = {}
    if heartbeat_interval_s:
        # Optuna 4.9 renamed the stale-trial callback (the old name warns until it goes in 6.0).
        parameters = inspect.signature(optuna.storages.RDBStorage).parameters
        callback = next(name for name in ("heartbeat_stale_trial_callback", "failed_trial_callback") if name in parameters)
        kwargs = {"heartbeat_interval": heartbeat_interval_s, "grace_period": grace_period_s(heartbeat_interval_s),
                  callback: report_stale_trial}
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 4-5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, **kwargs)


# The key of the PostgreSQL advisory lock (any 64-bit number; this one spells "expoptun").
_ADVISORY_LOCK_KEY = 0x6578706F7074756E


@contextlib.contextmanager
def storage_lock(url: str) -> Iterator[None]:
    """A cross-process lock around what Optuna does not make atomic: creating the schema (two workers
    starting on a new database both try), and the count-then-ask step of `total_trials`.

    A file beside a sqlite database; a session-level advisory lock on PostgreSQL and a named lock on
    MySQL (both released by the server when a killed worker's connection drops); none elsewhere.
    """
    path = sqlite_path(url)
    if path is not None:
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            yield
        return
    dialect = url.split(":", 1)[0].split("+", 1)[0]
    if dialect not in ("postgresql", "mysql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            if dialect == "postgresql":
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            else:
                connection.execute(sqlalchemy.text("SELECT GET_LOCK('experiments_optuna', -1)"))
            try:
                yield
            finally:
                unlock = ("SELECT pg_advisory_unlock(:key)" if dialect == "postgresql"
                          else "SELECT RELEASE_LOCK('experiments_optuna')")
                connection.execute(sqlalchemy.text(unlock), {"key": _ADVISORY_LOCK_KEY})
    finally:
        engine.dispose()
