"""Where runs are tracked: one absolute sqlite store under outputs/ unless told otherwise.

A new sqlite store opened by several processes at once is corrupted by MLflow's schema migration,
so creation and migration happen once, under a file lock, before any training (or parallel job) starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

# Creating a store makes MLflow and alembic log their migrations at INFO; a user's error message
# (or a run's output) should not be buried under them.
for _noisy in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # makes the UI open the experiment on its runs, not GenAI


def default_tracking_uri(output_dir: str | Path) -> str:
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None, output_dir: str | Path) -> str:
    """Config value first, then `MLFLOW_TRACKING_URI`, then the project's sqlite store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output_dir)


def sqlite_path(uri: str) -> Path | None:
    """`sqlite:////abs/mlflow.db` → `/abs/mlflow.db`; None for other stores."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


def artifact_root_for(uri: str) -> str | None:
    """Artifacts of a sqlite store live beside the db file (MLflow would use ./mlruns of the cwd)."""
    db = sqlite_path(uri)
    return (db.parent / "mlartifacts").as_uri() if db is not None else None


_PREPARED: dict[tuple[str, str], str] = {}  # (store, experiment) → id, once a process has made sure of it


def prepare_experiment(uri: str, experiment_name: str) -> str:
    """Create (and migrate) the store and the experiment if needed; return the experiment id."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    known = _PREPARED.get((uri, experiment_name))
    if known is not None and (db is None or db.exists()):  # a sweep's jobs after its first: no lock, no query
        return known
    lock_context = _null_lock()
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        lock_context = FileLock(str(db) + ".lock", timeout=300)
    with lock_context:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(
                    experiment_name,
                    artifact_location=artifact_root_for(uri),
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            except MlflowException:  # created meanwhile by a process on another machine
                experiment = client.get_experiment_by_name(experiment_name)
                assert experiment is not None
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
            if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    _PREPARED[(uri, experiment_name)] = experiment_id
    return experiment_id


class _null_lock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def ui_url(uri: str, experiment_id: str | None = None, run_id: str | None = None, host: str = "127.0.0.1",
           port: int = 5000) -> str:
    """Where the run shows up: the server itself for an http store, else the local `experiments ui`."""
    base = uri.rstrip("/") if uri.startswith("http") else f"http://{host}:{port}"
    if experiment_id and run_id:
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    if experiment_id:
        return f"{base}/#/experiments/{experiment_id}/runs"
    return base
