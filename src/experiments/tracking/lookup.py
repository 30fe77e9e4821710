"""Finding a past run in a tracking store and reading back what it recorded (its config, its tags).

Used by `train resume=…`, `reproduce` and `eval`; every failure is one sentence that names the store,
because "unknown run id" most often means "the run lives in another store".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError
from experiments.tracking.store import sqlite_path

CONFIG_ARTIFACT = "config/config.yaml"
RUN_DIR_TAG = "run_dir"
CHECKPOINT_DIR_TAG = "checkpoint.dir"


def open_store(uri: str) -> Any:
    """An `MlflowClient` on an existing store; never creates an empty sqlite file by looking."""
    from mlflow.tracking import MlflowClient

    # A progress bar per small artifact (a config, a diff) would bury the one line that matters.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise UserError(
            f"There is no MLflow store at {db}; pass the store the run was logged to "
            "(--tracking-uri / logger.tracking_uri / MLFLOW_TRACKING_URI)."
        )
    return MlflowClient(uri)


def find_run(client: Any, run_id: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(str(run_id))
    except MlflowException:
        raise UserError(
            f"MLflow run {run_id!r} is not in the store {uri}; check the id, or point --tracking-uri "
            "(or logger.tracking_uri) at the store it was logged to."
        ) from None


def recorded_config(client: Any, run: Any) -> DictConfig:
    """The resolved config the run trained with (its `config/config.yaml` artifact)."""
    from mlflow.exceptions import MlflowException

    run_id = run.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        except (MlflowException, OSError):  # the artifact is missing
            raise UserError(
                f"MLflow run {run_id} has no {CONFIG_ARTIFACT} artifact, so its config is unknown; "
                "only runs logged by `experiments train` can be reproduced, resumed or evaluated."
            ) from None
        cfg = OmegaConf.load(Path(local))
    assert isinstance(cfg, DictConfig)
    plain = OmegaConf.to_container(cfg)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)  # present when the config was composed with its hydra node (tests)
    return OmegaConf.create(plain)


def run_label(run: Any) -> str:
    return f"{run.info.run_name} ({run.info.run_id})"


def recorded_diff(client: Any, run: Any) -> str:
    """The uncommitted diff the run was trained with ('' for a clean tree)."""
    from mlflow.exceptions import MlflowException

    if run.data.tags.get("git.dirty") != "true":
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(client.download_artifacts(run.info.run_id, "config/git.diff", tmp)).read_text()
        except (MlflowException, OSError):  # an older run without the artifact: unknown-but-dirty code
            return "<unrecorded diff>"
