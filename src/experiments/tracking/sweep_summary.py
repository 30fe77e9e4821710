"""What a sweep's parent run records when the sweep ends: job counts, failures, the best child."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments.tracking.sweep_points import FAILURE_REASON_TAG, PARENT_TAG, POINT_TAG, swept_part


@dataclass(frozen=True)
class ChildRun:
    run_id: str
    run_name: str
    status: str
    point: str  # all overrides of the job
    params: str  # the swept ones: what distinguishes it from its siblings
    metric: float | None
    pruned: bool = False


@dataclass
class SweepSummary:
    metric: str
    mode: str  # "min" | "max"
    jobs: int = 0  # launched by this invocation
    failed_jobs: int = 0
    pruned_jobs: int = 0
    skipped_jobs: int = 0  # reused a FINISHED run (skip_finished)
    children: int = 0  # all runs under the parent, every invocation and worker
    finished_children: int = 0
    failed_children: int = 0
    best: ChildRun | None = None
    failures: list[str] = field(default_factory=list)

    def headline(self) -> str:
        text = (f"{self.jobs} jobs, {self.failed_jobs} failed, {self.skipped_jobs} reused a finished run; "
                f"{self.children} child runs, {self.finished_children} finished")
        if self.best is not None:
            text += f"; best {self.metric}={self.best.metric:.6g}: {self.best.run_name} ({self.best.run_id})"
        return text


def search_children(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every run whose MLflow parent is `parent_run_id` (all pages)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda run: run.info.start_time or 0)  # oldest first: ties go to it


def _is_pruned(run: Any) -> bool:
    tags = run.data.tags
    return tags.get("optuna.state") == "PRUNED" or tags.get(FAILURE_REASON_TAG, "").startswith("TrialPruned")


def child_runs(runs: Sequence[Any], metric: str, search_keys: Sequence[str]) -> list[ChildRun]:
    children = []
    for run in runs:
        value = run.data.metrics.get(metric)
        point = run.data.tags.get(POINT_TAG, "")
        children.append(ChildRun(
            run_id=run.info.run_id, run_name=run.info.run_name or "", status=run.info.status,
            point=point, params=swept_part(point, search_keys),
            metric=value if value is not None and math.isfinite(value) else None, pruned=_is_pruned(run),
        ))
    return children


def best_child(children: Sequence[ChildRun], mode: str) -> ChildRun | None:
    """The FINISHED child with the lowest (`min`) or highest (`max`) metric; ties go to the first."""
    scored = [child for child in children if child.status == "FINISHED" and child.metric is not None]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda child: child.metric)  # type: ignore[arg-type, return-value]


def summarize(children: Sequence[ChildRun], job_records: Sequence[Mapping[str, Any]], metric: str,
              mode: str) -> SweepSummary:
    summary = SweepSummary(metric=metric, mode=mode)
    summary.jobs = len(job_records)
    for record in job_records:
        if record["status"] == "PRUNED":
            summary.pruned_jobs += 1
        elif record["status"] != "COMPLETED":
            summary.failed_jobs += 1
            overrides = " ".join(record["overrides"])
            summary.failures.append(f"job {record['num']} ({overrides}): {record['error']}")
        elif record.get("reused_run_id"):
            summary.skipped_jobs += 1
    summary.children = len(children)
    summary.finished_children = sum(child.status == "FINISHED" for child in children)
    summary.failed_children = sum(child.status in ("FAILED", "KILLED") and not child.pruned
                                  for child in children)
    summary.best = best_child(children, mode)
    return summary


def _note(summary: SweepSummary, status: str, reason: str | None) -> str:
    """Markdown shown as the parent run's description in the MLflow UI."""
    lines = [f"**Sweep {status.lower()}**: {summary.headline()}."]
    if reason:
        lines.append(f"\n{reason}")
    if summary.best is not None:
        lines.append(f"\nBest child: `{summary.best.run_id}` — `{summary.best.params or summary.best.point}`")
    if summary.failures:
        listed = "\n".join(f"- {failure[:500]}" for failure in summary.failures[:20])
        lines.append(f"\nFailed jobs:\n{listed}")
    return "\n".join(lines)


def record_summary(tracking_uri: str, parent_run_id: str, summary: SweepSummary, status: str,
                   reason: str | None, artifacts: Sequence[tuple[Path, str]]) -> None:
    """Counts as metrics, the best child as tags, everything as `sweep/summary.json`; then close."""
    import time

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    counts = {"jobs": summary.jobs, "failed_jobs": summary.failed_jobs, "pruned_jobs": summary.pruned_jobs,
              "skipped_jobs": summary.skipped_jobs, "children": summary.children,
              "finished_children": summary.finished_children, "failed_children": summary.failed_children}
    metrics = [Metric(f"sweep/{key}", float(value), now, 0) for key, value in counts.items()]
    tags = {"mlflow.note.content": _note(summary, status, reason)}
    if summary.best is not None:
        metrics.append(Metric(f"sweep/best/{summary.metric}", float(summary.best.metric or 0.0), now, 0))
        tags.update({"sweep.best_run_id": summary.best.run_id, "sweep.best_run_name": summary.best.run_name,
                     "sweep.best_params": summary.best.params or summary.best.point,
                     "sweep.best_metric": f"{summary.metric}={summary.best.metric!r}"})
    if reason:
        tags[FAILURE_REASON_TAG] = reason[:5000]
    client.log_batch(parent_run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.json"
        path.write_text(json.dumps({**asdict(summary), "status": status, "reason": reason}, indent=2))
        client.log_artifact(parent_run_id, str(path), artifact_path="sweep")
    for artifact, folder in artifacts:
        client.log_artifact(parent_run_id, str(artifact), artifact_path=folder)
    client.set_terminated(parent_run_id, status)
