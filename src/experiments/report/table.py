"""The per-fix comparison: what is measured on each run, summarized over seeds, and against the baseline."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from experiments.report.runs import RunRecord
from experiments.report.stats import Estimate, estimate, paired_difference


@dataclass(frozen=True)
class Quantity:
    """One number per run, e.g. the final generalization gap; `lower_is_better` orients the verdict."""

    key: str
    label: str
    measure: Callable[[RunRecord], float]
    lower_is_better: bool
    compare_to_baseline: bool = True


def _best(record: RunRecord, key: str, lowest: bool) -> float:
    curve = record.curves.get(key)
    if not curve:
        return record.last(key)
    return min(curve.values()) if lowest else max(curve.values())


def kept_epoch(record: RunRecord) -> int | None:
    """The epoch whose weights the run ends with when that is not the last one: the best epoch that
    early stopping restored (`restore_best_weights`)."""
    if record.metrics.get("early_stopping/restored") == 1.0 and "early_stopping/best_epoch" in record.metrics:
        return int(record.metrics["early_stopping/best_epoch"])
    return None


def final(record: RunRecord, key: str) -> float:
    """`key` for the model the run ends with: at the restored epoch, else the last logged value."""
    epoch = kept_epoch(record)
    curve = record.curves.get(key, {})
    return curve[epoch] if epoch is not None and epoch in curve else record.last(key)


def quantities(main: str) -> list[Quantity]:
    """What the report shows; `main` is the task's main metric (acc, or r2 for regression)."""
    return [
        Quantity("best_val_loss", "best val loss",
                 lambda r: r.metrics.get("val/loss_best", _best(r, "val/loss", lowest=True)), True),
        Quantity(f"best_val_{main}", f"best val {main}", lambda r: _best(r, f"val/{main}", lowest=False), False),
        Quantity("best_epoch", "best epoch", lambda r: r.last("val/loss_best_epoch"), True,
                 compare_to_baseline=False),
        Quantity("final_val_loss", "final val loss", lambda r: final(r, "val/loss"), True),
        Quantity(f"final_val_{main}", f"final val {main}", lambda r: final(r, f"val/{main}"), False),
        Quantity("final_gap_loss", "final gap loss", lambda r: final(r, "gap/loss"), True),
        Quantity(f"final_gap_{main}", f"final gap {main}", lambda r: final(r, f"gap/{main}"), True),
    ]


@dataclass
class GroupRow:
    """One fix: its runs, each quantity over seeds, and the paired difference to the baseline."""

    group: str
    records: list[RunRecord]
    values: dict[str, Estimate]
    vs_baseline: dict[str, Estimate]

    @property
    def seeds(self) -> list[str]:
        return sorted(r.seed for r in self.records)


def build_rows(records: list[RunRecord], main: str, baseline: str | None) -> list[GroupRow]:
    """Rows ordered baseline first, then by mean final loss gap (smallest first)."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    measured = {name: {q.key: {r.seed: q.measure(r) for r in runs} for q in quantities(main)}
                for name, runs in groups.items()}
    rows = []
    for name, runs in groups.items():
        values = {q.key: estimate(list(measured[name][q.key].values())) for q in quantities(main)}
        vs = {}
        if baseline in groups and name != baseline:
            vs = {q.key: paired_difference(measured[name][q.key], measured[baseline][q.key])
                  for q in quantities(main) if q.compare_to_baseline}
        rows.append(GroupRow(name, sorted(runs, key=lambda r: r.seed), values, vs))

    def order(row: GroupRow) -> tuple[int, float]:
        gap = row.values["final_gap_loss"].mean
        return (0 if row.group == baseline else 1, gap if math.isfinite(gap) else math.inf)

    return sorted(rows, key=order)


def verdict(row: GroupRow, key: str, lower_is_better: bool) -> str:
    """`better` / `worse` when the paired interval excludes 0, `unclear` otherwise, '' for the baseline."""
    diff = row.vs_baseline.get(key)
    if diff is None or diff.n < 2:
        return ""  # one seed: no interval, no verdict
    if not diff.excludes_zero():
        return "unclear"
    return "better" if (diff.mean < 0) == lower_is_better else "worse"


def main_metric_of(runs: list[Any]) -> str:
    """`acc` for classification runs, `r2` for regression, read from the gap the MLflow runs logged."""
    for run in runs:
        for key in run.data.metrics:
            if key.startswith("gap/") and key != "gap/loss":
                return key.split("/", 1)[1]
    return "acc"
