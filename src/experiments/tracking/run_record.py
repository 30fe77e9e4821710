"""What a new run records as it opens: params (every config leaf and derived size), reproducibility tags,
the config files, its dataset entry and the column report. Built from the config in the process that
trains, written by `write_run_record`: there for a run alone, in a worker process for a population's
members (`population_writer.py`), so a record holds only plain, picklable values."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.paths import project_root
from experiments.speedups import render_yaml
from experiments.tracking.dataset import log_dataset_input
from experiments.tracking.metadata import environment_tags, git_state
from experiments.tracking.params import flatten_params


@dataclass
class RunRecord:
    params: list[Any]  # mlflow.entities.Param
    tags: list[Any]  # mlflow.entities.RunTag
    config: Any  # the resolved config as plain values, logged as config/config.yaml
    overrides: list[str]  # the job's overrides, logged as config/overrides.yaml
    git_diff: str  # uncommitted changes, logged as config/git.diff when there are any
    dataset: Any  # mlflow.entities.DatasetInput
    columns: str  # the column report, logged as data/columns.txt


def run_record(cfg: DictConfig, derived: dict[str, Any], overrides: list[str], extra_tags: dict[str, str],
               dataset: Any, columns: str, existing_params: dict[str, str] | None = None) -> RunRecord:
    """`existing_params`: what a run named by `logger.run_id` already holds (MLflow refuses changes)."""
    from mlflow.entities import Param, RunTag

    resolved = OmegaConf.to_container(cfg, resolve=True)
    params = flatten_params(resolved, skip=("logger.run_id",))  # type: ignore[arg-type]
    params.update({key: str(value) for key, value in derived.items()})
    existing = existing_params or {}
    git = git_state(project_root())
    tags = {
        **environment_tags(),
        "git.commit": git["commit"],
        "git.dirty": git["dirty"],
        "mlflow.source.git.commit": git["commit"],
        "overrides": " ".join(overrides),
        **extra_tags,
    }
    return RunRecord(params=[Param(k, v) for k, v in params.items() if k not in existing],
                     tags=[RunTag(k, str(v)) for k, v in tags.items()], config=resolved, overrides=list(overrides),
                     git_diff=git["diff"], dataset=dataset, columns=columns)


def write_run_record(client: Any, run_id: str, record: RunRecord) -> None:
    """Write `record` into the run (`client`: an MlflowClient). Writing it twice leaves the same run."""
    # The tags ride with the first 100 params (MLflow's per-call limit): one store write fewer per run.
    batches = [record.params[start : start + 100] for start in range(0, len(record.params), 100)] or [[]]
    client.log_batch(run_id, params=batches[0], tags=record.tags)
    for batch in batches[1:]:
        client.log_batch(run_id, params=batch)
    with tempfile.TemporaryDirectory() as tmp:
        # Rendered here, from plain values, as `OmegaConf.to_yaml(cfg, resolve=True)` renders the config.
        (Path(tmp) / "config.yaml").write_text(render_yaml(record.config), encoding="utf-8")
        (Path(tmp) / "overrides.yaml").write_text(render_yaml(record.overrides), encoding="utf-8")
        if record.git_diff:
            (Path(tmp) / "git.diff").write_text(record.git_diff)
        client.log_artifacts(run_id, tmp, artifact_path="config")
    log_dataset_input(client, run_id, record.dataset)
    client.log_text(run_id, record.columns, "data/columns.txt")


def write_metrics(client: Any, run_id: str, metrics: list[Any]) -> None:
    """Write `metrics` (MLflow `Metric`s) to the run, at most 1000 per call as MLflow takes them."""
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id=run_id, metrics=metrics[start : start + 1000])
