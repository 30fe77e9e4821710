"""A sweep job's side of the MLflow parent/child link (torch-free, mlflow imported only when used).

The launching process writes `mlflow_sweep.json` into the sweep dir before any job starts (see
`sweep_parent.py`); every job, whatever the launcher (in process, joblib workers, submitit processes
on other hosts sharing the file system), reads it from `HydraConfig.get().sweep.dir` and logs its run
as a child of that parent, into the parent's store and experiment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from experiments.run_names import trial_run_name
from experiments.tracking.sweep_points import (
    HOST_TAG,
    INVOCATION_TAG,
    NAME_TAG,
    PARENT_TAG,
    PID_TAG,
    POINT_TAG,
    ROLE_TAG,
    STUDY_NAME_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    point_of,
)

LINK_FILE = "mlflow_sweep.json"
JOB_RECORDS_DIR = ".sweep_jobs"

@dataclass(frozen=True)
class SweepLink:
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str
    sweep_name: str | None
    search_keys: tuple[str, ...]
    # The launching process: its jobs' runs carry these, so a later invocation can tell the runs a dead
    # process left RUNNING (see sweep_orphans.py). Absent from link files written before they existed.
    invocation: str | None = None
    host: str | None = None
    pid: int | None = None

    def write(self, sweep_dir: str | Path) -> None:
        folder = Path(sweep_dir)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / LINK_FILE, json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, sweep_dir: str | Path) -> SweepLink | None:
        path = Path(sweep_dir) / LINK_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["search_keys"] = tuple(data.get("search_keys", ()))
        return cls(**data)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _multirun_sweep_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode is None or hydra_cfg.mode.name != "MULTIRUN":
        return None
    return str(hydra_cfg.sweep.dir)


def current_link() -> SweepLink | None:
    """The parent this job belongs to; None outside a multirun or when the sweep tracks nothing."""
    sweep_dir = _multirun_sweep_dir()
    return SweepLink.read(sweep_dir) if sweep_dir else None


def _job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def join_sweep_parent(cfg: DictConfig) -> dict[str, str]:
    """In a sweep job: log into the parent's store and experiment, name the run by its swept values,
    and return the tags that make it a child. Outside a sweep: no change, no tags."""
    link = current_link()
    if link is None:
        return {}
    point = point_of(_job_overrides())
    with open_dict(cfg):
        cfg.logger.tracking_uri = link.tracking_uri
        cfg.logger.experiment_name = link.experiment_name
        in_point = {item.partition("=")[0].lstrip("+~") for item in point.split(" ") if item}
        swept = [key for key in link.search_keys if key in in_point]
        if not cfg.logger.get("run_name") and swept:
            cfg.logger.run_name = trial_run_name(cfg, swept)
    tags = {PARENT_TAG: link.parent_run_id, SWEEP_TAG: link.parent_run_id, ROLE_TAG: "child",
            POINT_TAG: point}
    if link.invocation is not None:
        tags.update({INVOCATION_TAG: link.invocation, HOST_TAG: str(link.host), PID_TAG: str(link.pid)})
    if link.sweep_name:
        tags[NAME_TAG] = link.sweep_name
    trial = cfg.get("optuna") or {}
    if trial.get("trial_number") is not None:
        tags.update({TRIAL_TAG: str(trial["trial_number"]), STUDY_NAME_TAG: str(trial.get("study_name"))})
    return tags


# Set by `finished_objective` in the job's process, read by the callback's on_job_end right after.
_reused_run: dict[str, str] = {}


def objective_names(cfg: DictConfig) -> list[str]:
    names = cfg.optimized_metric
    return [str(names)] if isinstance(names, str) else [str(n) for n in names]


def objective_value(metrics: Mapping[str, float], cfg: DictConfig) -> Any:
    """What a sweeper optimizes: one metric, or a list for multi-objective sweeps (None where missing)."""
    values = [metrics.get(name) for name in objective_names(cfg)]
    return values[0] if isinstance(cfg.optimized_metric, str) else values


def finished_objective(cfg: DictConfig) -> Any:
    """With `skip_finished`, the objective of a FINISHED child of this sweep with the same point, so
    the job returns it instead of training again; None when the point must be trained."""
    _reused_run.clear()
    link = current_link()
    if link is None or not cfg.get("skip_finished"):
        return None
    from experiments.tracking.sweep_summary import search_children

    point = point_of(_job_overrides())
    names = objective_names(cfg)
    done = [run for run in search_children(link.tracking_uri, link.experiment_id, link.parent_run_id)
            if run.info.status == "FINISHED" and run.data.tags.get(POINT_TAG) == point
            and all(name in run.data.metrics for name in names)]
    if not done:
        return None
    latest = max(done, key=lambda run: run.info.start_time or 0)
    _reused_run["run_id"] = latest.info.run_id
    print(f"Skipping {point or 'the base config'}: FINISHED as run {latest.info.run_id} "
          f"({', '.join(f'{n}={latest.data.metrics[n]:.6g}' for n in names)}).")
    return objective_value(latest.data.metrics, cfg)


def record_job(sweep_dir: str | Path, invocation: str, job_num: int, overrides: list[str], status: str,
               error: str | None) -> None:
    """One small file per job in the sweep dir, so the launching process can count jobs that failed
    before they opened a run (e.g. a bad override) and jobs that reused a finished run."""
    folder = Path(sweep_dir) / JOB_RECORDS_DIR / invocation
    folder.mkdir(parents=True, exist_ok=True)
    record = {"num": job_num, "overrides": overrides, "status": status, "error": error,
              "reused_run_id": _reused_run.pop("run_id", None)}
    _write_atomically(folder / f"{job_num}.json", json.dumps(record))


def read_job_records(sweep_dir: str | Path, invocation: str) -> list[Mapping[str, Any]]:
    folder = Path(sweep_dir) / JOB_RECORDS_DIR / invocation
    if not folder.is_dir():
        return []
    records = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    return sorted(records, key=lambda record: record["num"])
