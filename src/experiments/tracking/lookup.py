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
from experiments.legacy_config import upgraded
from experiments.tracking.store import sqlite_path
from experiments.tracking.sweep_points import ROLE_TAG
from experiments.tracking.sweep_summary import search_children

CONFIG_ARTIFACT = "config/config.yaml"
RUN_DIR_TAG = "run_dir"
CHECKPOINT_DIR_TAG = "checkpoint.dir"


# How each command is pointed at another store, for the messages that ask the user to.
STORE_OPTIONS = {
    "reproduce": "--tracking-uri",
    "evaluate": "tracking_uri=…",
    "predict": "tracking_uri=…",
    "resume": "logger.tracking_uri=… (or paths.output_dir=…)",
}


def open_store(uri: str, action: str = "reproduce") -> Any:
    """An `MlflowClient` on an existing store; never creates an empty sqlite file by looking."""
    from mlflow.tracking import MlflowClient

    # A progress bar per small artifact (a config, a diff) would bury the one line that matters.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise UserError(
            f"There is no MLflow store at {db}; pass the store the run was logged to "
            f"({STORE_OPTIONS[action]}, or MLFLOW_TRACKING_URI)."
        )
    return MlflowClient(uri)


def find_run(client: Any, run_id: str, uri: str, action: str = "reproduce") -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(str(run_id))
    except MlflowException:
        raise UserError(
            f"MLflow run {run_id!r} is not in the store {uri}; check the id, or pass the store it was "
            f"logged to with {STORE_OPTIONS[action]} (or MLFLOW_TRACKING_URI)."
        ) from None


def find_trained_run(client: Any, run_id: str, uri: str, action: str) -> Any:
    """`find_run` for a run to `action` (reproduce, evaluate, resume): a sweep's parent run trained
    nothing itself, so it is refused with one of its child runs to use instead."""
    run = find_run(client, run_id, uri, action)
    if run.data.tags.get(ROLE_TAG) == "parent":
        raise UserError(_sweep_parent_refusal(run, uri, action))
    return run


def _sweep_parent_refusal(parent: Any, uri: str, action: str) -> str:
    about = f"MLflow run {parent.info.run_id} is the parent run of a sweep"
    children = search_children(uri, parent.info.experiment_id, parent.info.run_id)
    if not children:
        return f"{about} and has no child runs; there is nothing to {action}."
    # A finished child has everything to reproduce or evaluate; only an unfinished one can be resumed.
    if action != "resume":
        finished = [c for c in children if c.info.status == "FINISHED"]
        example = run_label((finished or children)[0])
        if len(children) == 1:
            return f"{about}; {action} its child run {example} instead."
        return f"{about}; {action} one of its {len(children)} child runs, e.g. {example}."
    unfinished = [c for c in children if c.info.status != "FINISHED"]
    if not unfinished:
        return (f"{about} whose child runs all finished, so there is nothing to resume; "
                f"rerun one with `experiments reproduce {children[0].info.run_id}`.")
    return (f"{about}; resume one of its unfinished child runs ({len(unfinished)} of {len(children)}), "
            f"e.g. {run_label(unfinished[0])}.")


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
    return upgraded(OmegaConf.create(plain))


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
