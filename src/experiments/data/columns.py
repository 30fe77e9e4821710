"""Which column plays which part: the target, numeric, categorical or date features, or left out.

Inferred from the raw table the way AutoGluon-Tabular types features (IDs, constants and a saved pandas
index are left out; ISO dates are parsed), printed as a table before training, and overridable with
`data.options.{features,exclude,categorical,numeric}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from experiments.errors import UserError

# The options every dataset takes that decide column roles.
COLUMN_KEYS = ("target", "features", "exclude", "categorical", "numeric")
FEATURE_ROLES = ("numeric", "categorical", "datetime")
_INDEX_NAME = re.compile(r"^Unnamed: \d+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
# Unique-per-row integer or text columns are IDs only in tables big enough for that to be telling.
_ID_MIN_ROWS = 50


@dataclass(frozen=True)
class ColumnRole:
    name: str
    role: str  # target | numeric | categorical | datetime | dropped
    note: str = ""  # why (dropped), or what (target: task and classes)
    missing: int = 0  # empty cells


@dataclass(frozen=True)
class ColumnPlan:
    roles: tuple[ColumnRole, ...]

    def columns(self, role: str) -> list[str]:
        return [c.name for c in self.roles if c.role == role]

    @property
    def features(self) -> list[str]:
        """The raw columns the model reads, in table order."""
        return [c.name for c in self.roles if c.role in FEATURE_ROLES]

    @property
    def target(self) -> str:
        return self.columns("target")[0]

    def table(self) -> str:
        """The plan as the short table printed before training and logged with the run."""
        width = max(len("column"), *(len(c.name) for c in self.roles))
        lines = [f"{'column':<{width}}  {'role':<11}  note"]
        for c in self.roles:
            note = c.note + (f"{'; ' if c.note else ''}{c.missing} empty cells" if c.missing else "")
            lines.append(f"{c.name:<{width}}  {c.role:<11}  {note}".rstrip())
        return "\n".join(lines)

    def to_dict(self) -> list[dict[str, Any]]:
        return [{"column": c.name, "role": c.role, "note": c.note, "missing": c.missing} for c in self.roles]


def _names(options: dict[str, Any], key: str) -> list[str]:
    value = options.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _check_known(frame: Any, options: dict[str, Any], target: str) -> None:
    columns = [str(c) for c in frame.columns]
    for key in ("features", "exclude", "categorical", "numeric"):
        unknown = [name for name in _names(options, key) if name not in columns]
        if unknown:
            raise UserError(f"data.options.{key} names columns the table does not have: {', '.join(unknown)}; "
                            f"its columns are: {', '.join(columns)}.")
        if target in _names(options, key) and key != "exclude":
            raise UserError(f"data.options.{key} lists the target column {target!r}; the target cannot be a "
                            "feature (it would give the answer away).")
    forced = set(_names(options, "categorical")) & set(_names(options, "numeric"))
    if forced:
        raise UserError(f"data.options.categorical and data.options.numeric both list: {', '.join(sorted(forced))}.")


def _looks_like_dates(values: Any) -> bool:
    sample = values.dropna()
    sample = sample.iloc[:1000] if len(sample) > 1000 else sample
    return len(sample) > 0 and all(isinstance(v, str) and _ISO_DATE.match(v.strip()) for v in sample)


def _inferred_role(column: Any, n_rows: int) -> tuple[str, str]:
    """(role, note) for a column nobody named in an override."""
    import pandas as pd

    name = str(column.name)
    if _INDEX_NAME.match(name):
        return "dropped", "a saved pandas index"
    non_null = column.dropna()
    if non_null.empty:
        return "dropped", "empty"
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        kind = "categorical"
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        kind = "datetime"
    elif pd.api.types.is_numeric_dtype(dtype):
        kind = "numeric"
    elif _looks_like_dates(column):
        kind = "datetime"
    else:
        kind = "categorical"
    if kind == "numeric":
        if non_null.min() == non_null.max():
            return "dropped", "constant"
    elif non_null.nunique() == 1:
        return "dropped", "constant"
    unique_per_row = (kind == "categorical" or pd.api.types.is_integer_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)
    if unique_per_row and n_rows >= _ID_MIN_ROWS and non_null.nunique() == n_rows:
        return "dropped", f"ID-like: unique per row (keep it with data.options.{kind}=[{name}])"
    return kind, ""


def plan_columns(frame: Any, options: dict[str, Any], target_note: str = "") -> ColumnPlan:
    """Roles for every column of `frame` (which holds the target column `options['target']`)."""
    target = str(options["target"])
    _check_known(frame, options, target)
    chosen = _names(options, "features")
    excluded = set(_names(options, "exclude"))
    forced = {**{n: "categorical" for n in _names(options, "categorical")},
              **{n: "numeric" for n in _names(options, "numeric")}}
    n_rows = len(frame)
    missing = frame.isna().sum()
    roles = []
    for name in frame.columns:
        name = str(name)
        if name == target:
            roles.append(ColumnRole(name, "target", target_note))
            continue
        if name in excluded:
            role, note = "dropped", "data.options.exclude"
        elif chosen and name not in chosen and name not in forced:
            role, note = "dropped", "not in data.options.features"
        elif name in forced:
            role, note = forced[name], "set in data.options"
            if role == "numeric" and not _numeric_like(frame[name]):
                raise UserError(f"data.options.numeric lists {name!r}, whose values are not numbers "
                                f"(e.g. {frame[name].dropna().iloc[0]!r}); list it in data.options.categorical.")
        else:
            role, note = _inferred_role(frame[name], n_rows)
            if name in chosen and role == "dropped" and not note.startswith("empty") and note != "constant":
                role, note = _inferred_kind(frame[name]), "listed in data.options.features"
        roles.append(ColumnRole(name, role, note, int(missing[name]) if role != "dropped" else 0))
    plan = ColumnPlan(tuple(roles))
    if not plan.features:
        raise UserError(f"No feature columns are left (target {target!r}): {_dropped_summary(plan)}.")
    return plan


def is_number(values: Any) -> bool:
    """Numbers that are quantities: pandas counts booleans as numeric, this does not."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)


def _inferred_kind(column: Any) -> str:
    import pandas as pd

    numeric = is_number(column)
    if pd.api.types.is_datetime64_any_dtype(column.dtype) or (not numeric and _looks_like_dates(column)):
        return "datetime"
    return "numeric" if numeric else "categorical"


def _numeric_like(column: Any) -> bool:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column.dtype):
        return True
    return bool(pd.to_numeric(column.dropna(), errors="coerce").notna().all())


def _dropped_summary(plan: ColumnPlan) -> str:
    dropped = [f"{c.name} ({c.note})" for c in plan.roles if c.role == "dropped"]
    return "left out " + ", ".join(dropped) if dropped else "the table has no other column"
