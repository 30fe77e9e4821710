"""The preprocessing pipeline: scikit-learn transformers per column role, fitted on the training split.

numeric     → SimpleImputer(mean: a gap becomes 0 after scaling) → StandardScaler
categorical → SimpleImputer('missing') → as text → OneHotEncoder(unseen tolerated, rare grouped)
datetime    → year, month, day, weekday, hour, days since 1970 → SimpleImputer(mean) → StandardScaler

The fitted `ColumnTransformer` selects its columns by name, so any column order (and extra columns)
give the same features; it travels inside the logged model (tracking/pyfunc_model.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.data.columns import ColumnPlan

DATE_PARTS = ("year", "month", "day", "weekday", "hour", "days")


def _text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 3.0 (an integer column that had a gap) is the category 3
    return str(value)


def as_text(values: Any) -> Any:
    """Categories as strings: booleans, numbers and text mixed in one column become one kind."""
    array = np.asarray(values, dtype=object)
    return np.vectorize(_text, otypes=[object])(array) if array.size else array.astype(str)


def date_parts(frame: Any) -> np.ndarray:
    """Each date column → its numeric parts (NaN where a cell is empty or not a date)."""
    import pandas as pd

    columns = []
    for name in frame.columns:
        stamps = pd.to_datetime(frame[name], errors="coerce", utc=True, format="ISO8601") \
            if not pd.api.types.is_datetime64_any_dtype(frame[name].dtype) else frame[name]
        stamps = pd.Series(stamps)
        if getattr(stamps.dt, "tz", None) is None:
            stamps = stamps.dt.tz_localize("UTC")
        days = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds() / 86400.0
        for part in (stamps.dt.year, stamps.dt.month, stamps.dt.day, stamps.dt.day_of_week, stamps.dt.hour, days):
            columns.append(part.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def date_part_names(transformer: Any, names: Any) -> list[str]:
    return [f"{name}_{part}" for name in names for part in DATE_PARTS]


def build_preprocessor(plan: ColumnPlan, impute: bool = True, standardize: bool = True,
                       min_frequency: float | None = 0.01) -> Any:
    """An unfitted `ColumnTransformer` for the plan's feature columns (dropped ones are never read)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    def numeric_steps() -> list[tuple[str, Any]]:
        steps: list[tuple[str, Any]] = []
        if impute:
            steps.append(("impute", SimpleImputer(strategy="mean", keep_empty_features=True)))
        steps.append(("scale", StandardScaler() if standardize else "passthrough"))
        return steps

    parts = []
    numeric = plan.columns("numeric")
    if numeric:
        parts.append(("numeric", Pipeline(numeric_steps()), numeric))
    categorical = plan.columns("categorical")
    if categorical:
        steps: list[tuple[str, Any]] = []
        if impute:
            steps.append(("impute", SimpleImputer(strategy="constant", fill_value="missing")))
        steps += [
            ("text", FunctionTransformer(as_text, feature_names_out="one-to-one")),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=min_frequency,
                                     sparse_output=False, dtype=np.float32)),
        ]
        parts.append(("categorical", Pipeline(steps), categorical))
    dates = plan.columns("datetime")
    if dates:
        steps = [("parts", FunctionTransformer(date_parts, feature_names_out=date_part_names)), *numeric_steps()]
        parts.append(("datetime", Pipeline(steps), dates))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
