"""Which runs a report covers, read from the MLflow store alone (no local files needed).

A report is asked for by experiment name, by sweep parent run id, by MLflow filter string, or by a
combination; every way of getting it wrong is one sentence naming the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from experiments.errors import UserError
from experiments.tracking.store import sqlite_path

PARENT_TAG = "mlflow.parentRunId"  # set on sweep children by the sweep parent callback (and by MLflow)
# The per-epoch curves a report draws; the main metric's keys are added once it is known.
CURVE_KEYS = ("val/loss", "train/loss", "gap/loss")


@dataclass
class RunRecord:
    """One finished run: its group (fix), its seed, its last metric values and its per-epoch curves."""

    run_id: str
    run_name: str
    group: str
    seed: str
    start_time: int
    metrics: dict[str, float]
    curves: dict[str, dict[int, float]] = field(default_factory=dict)

    def last(self, key: str) -> float:
        return self.metrics.get(key, math.nan)


@dataclass
class Selection:
    runs: list[Any]
    parent_run_id: str | None
    label: str  # names the report (experiment name or parent id), used for the default output dir
    experiment_ids: list[str]


def open_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise UserError(f"There is no MLflow store at {db}; pass the one the runs were logged to with --tracking-uri.")
    return MlflowClient(uri)


def select_runs(client: Any, uri: str, experiment: str | None, parent: str | None,
                filter_string: str | None) -> Selection:
    """FINISHED runs of `experiment` and/or children of `parent`, narrowed by `filter_string`."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    clauses = ["attributes.status = 'FINISHED'"]
    parent_run_id: str | None = None
    if parent:
        try:
            parent_run = client.get_run(parent)
        except MlflowException:
            raise UserError(f"MLflow run {parent!r} is not in the store {uri}; check the id or --tracking-uri.") from None
        parent_run_id = parent_run.info.run_id
        experiment_ids = [parent_run.info.experiment_id]
        clauses.append(f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
        label = f"parent-{parent_run_id[:8]}"
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ALL) if e.name != "Default")
            raise UserError(f"There is no MLflow experiment named {experiment!r} in {uri}; "
                            f"experiments there: {', '.join(names) or 'none'}.")
        if parent and found.experiment_id not in experiment_ids:
            raise UserError(f"Run {parent!r} belongs to another experiment than {experiment!r}.")
        experiment_ids = [found.experiment_id]
        label = experiment if not parent else label
    if not parent and not experiment:
        if not filter_string:
            raise UserError("Say which runs to compare: --experiment NAME, --parent RUN_ID or --filter \"tags.fix = 'l2'\".")
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
        label = "filtered"
    if filter_string:
        clauses.append(filter_string)
    query = " and ".join(clauses)
    try:
        runs = client.search_runs(experiment_ids, filter_string=query, max_results=50000)
    except MlflowException as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"MLflow rejected the filter {filter_string!r}: {first_line}") from None
    if not runs:
        what = " and ".join(p for p in (f"experiment {experiment!r}" if experiment else "",
                                          f"parent run {parent!r}" if parent else "",
                                          f"filter {filter_string!r}" if filter_string else "") if p)
        raise UserError(f"No finished runs match {what} in {uri}.")
    parent_ids = {r.data.tags.get(PARENT_TAG) for r in runs}
    runs = [r for r in runs if r.info.run_id not in parent_ids]  # a sweep's parent run is no member
    if not runs:
        raise UserError(f"Only sweep parent runs match in {uri}; they have no children to compare.")
    if parent_run_id is None:
        parents = {r.data.tags.get(PARENT_TAG) for r in runs}
        if len(parents) == 1 and None not in parents:
            parent_run_id = parents.pop()  # all from one sweep: its parent receives the report
    return Selection(runs, parent_run_id, label, experiment_ids)


def group_by_hint(runs: list[Any], shown: int = 8) -> str:
    """Which --group-by would work: the runs' own tags (not MLflow's) that split them into groups of
    several runs, as a fix tag does; per-run tags (run_dir) or shared ones (env.*) group nothing."""
    values: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for run in runs:
        for key, value in run.data.tags.items():
            if not key.startswith("mlflow."):
                values.setdefault(key, set()).add(value)
                counts[key] = counts.get(key, 0) + 1
    if not values:
        return "they have no tags of their own; tag them when training, e.g. +tags.fix=NAME"
    grouping = sorted(key for key in values if 1 < len(values[key]) < counts[key])
    if grouping:
        more = f" (+{len(grouping) - shown} more)" if len(grouping) > shown else ""
        return ("pass --group-by with one of their tags that splits them into groups: "
                f"{', '.join(grouping[:shown])}{more}")
    names = sorted(values)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (f"none of their tags ({', '.join(names[:shown])}{more}) splits them into groups; "
            "tag them when training, e.g. +tags.fix=NAME")


def to_records(client: Any, runs: list[Any], group_by: str, curve_keys: tuple[str, ...]) -> tuple[list[RunRecord], list[str]]:
    """Runs grouped by tag `group_by`, one per (group, seed) — the newest wins; notes say what was left out."""
    notes: list[str] = []
    untagged = [r for r in runs if group_by not in r.data.tags]
    if untagged and len(untagged) == len(runs):
        raise UserError(f"None of the {len(runs)} runs has a {group_by!r} tag to group by; "
                        f"{group_by_hint(runs)}.")
    if untagged:
        notes.append(f"{len(untagged)} run(s) without a {group_by!r} tag left out.")
    newest: dict[tuple[str, str], Any] = {}
    replaced = 0
    for run in sorted((r for r in runs if group_by in r.data.tags), key=lambda r: r.info.start_time):
        tags = run.data.tags
        seed = tags.get("seed") or run.data.params.get("seed") or run.info.run_id
        key = (tags[group_by], seed)
        replaced += key in newest
        newest[key] = run
    if replaced:
        notes.append(f"{replaced} older run(s) of a {group_by} and seed that ran again left out: the newest counts "
                     "(narrow the selection with --parent or --filter \"tags.study = '…'\").")
    records = []
    for (group, seed), run in newest.items():
        record = RunRecord(run.info.run_id, run.info.run_name or run.info.run_id[:8], group, str(seed),
                           run.info.start_time, {k: float(v) for k, v in run.data.metrics.items()})
        for key in curve_keys:
            history = client.get_metric_history(run.info.run_id, key)
            if history:
                record.curves[key] = {int(m.step): float(m.value) for m in sorted(history, key=lambda m: m.timestamp)}
        records.append(record)
    return records, notes
