"""What names a sweep's runs in MLflow: the tags that tie children to their parent, and a job's point
(the overrides that define what it trains), shared by the job, the parent and the summary."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests runs by
SWEEP_TAG = "sweep"  # the parent's run id on parent and children, for the UI's Group-by
ROLE_TAG = "sweep.role"  # "parent" | "child"
NAME_TAG = "sweep.name"
POINT_TAG = "sweep.point"  # the job's overrides, canonical: what `skip_finished` compares
# The invocation (launching process) a run belongs to, and where that process ran: a later invocation
# closes the runs a dead one left RUNNING (sweep_orphans.py). The parent carries the latest invocation.
INVOCATION_TAG = "sweep.invocation"
HOST_TAG = "sweep.host"
PID_TAG = "sweep.pid"
FAILURE_REASON_TAG = "failure_reason"  # why a run ended FAILED or KILLED
# An Optuna trial's number and study, tagged as its run is created: a run whose job dies before its
# params are written still names its trial.
TRIAL_TAG = "optuna.trial_number"
STUDY_NAME_TAG = "optuna.study_name"

# Overrides that do not change what a job trains: launcher/sweeper settings, the Optuna trial link
# and the sweep's own switches. Leaving them out keeps a point's identity when a sweep is extended.
_NOT_PART_OF_POINT = ("hydra", "optuna", "sweep", "sweep_name", "skip_finished")


def override_key(line: str) -> str:
    """`++optuna.trial_number=3` → `optuna.trial_number`; `hydra/launcher=joblib` → `hydra/launcher`."""
    return line.split("=", 1)[0].lstrip("~+")


def _canonical_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):  # no spaces: points and swept parts are split on spaces
        return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return str(value)


def point_of(overrides: Iterable[str]) -> str:
    """The overrides that define what a job trains, parsed so spellings agree (`1e-2` == `0.01`), sorted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [line for line in overrides
             if override_key(line).split(".")[0].split("/")[0] not in _NOT_PART_OF_POINT]
    parsed = OverridesParser.create().parse_overrides(lines)
    return " ".join(sorted(f"{o.get_key_element()}={_canonical_value(o.value())}" for o in parsed))


def swept_part(point: str, search_keys: Iterable[str]) -> str:
    """The swept overrides of a point: `model.activation=tanh optimizer.lr=0.01`."""
    keys = set(search_keys)
    parts = []
    for item in point.split(" ") if point else []:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if key in keys:
            parts.append(f"{key}={value}")
    return " ".join(parts)
