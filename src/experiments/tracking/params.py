"""Flatten a config into MLflow params the UI can compare (every leaf, numeric where numeric)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


def _leaf(value: Any) -> str:
    if value is None:
        # A literal "None" makes the parallel-coordinates chart drop the run; an empty marker reads better.
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_leaf(v) for v in value) + "]"
    return str(value)


def flatten_params(config: Mapping[str, Any], prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, str]:
    """`{"model": {"hidden_dims": [10, 8]}}` → `{"model.hidden_dims": "[10, 8]"}`; `_target_` keys skipped."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if key.startswith("_") or name in skip:
            continue
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}.", skip=skip))
        else:
            flat[name] = _leaf(value)[:MAX_PARAM_LENGTH]
    return flat
