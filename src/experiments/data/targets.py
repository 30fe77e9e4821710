"""The target column: which task it implies, and the mapping between its values and what the net sees.

Class labels keep their original values end to end (the net sees 0..k-1; predictions map back); the
binary positive class is a setting; regression targets are standardized on the training split (as
scikit-learn's `TransformedTargetRegressor` with a `StandardScaler` would) and every metric and
prediction is turned back into the original units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.data.columns import is_number
from experiments.errors import UserError

# An integer target with at most this many values (or 5% of the rows) is read as class labels.
MAX_AUTO_CLASSES = 20
# A classification task needs on average this many rows per class.
MIN_ROWS_PER_CLASS = 5


@dataclass(frozen=True)
class TargetEncoding:
    """What the training split taught about the target; applied to any later rows the same way."""

    name: str
    task: str  # binary | multiclass | regression
    classes: tuple[Any, ...] = ()  # original labels; for binary, (negative, positive)
    mean: float = 0.0  # regression: the training split's mean and standard deviation
    std: float = 1.0
    class_weights: tuple[float, ...] | None = field(default=None)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def positive(self) -> Any:
        return self.classes[1] if self.task == "binary" else None

    def encode(self, values: Any, where: str = "") -> np.ndarray:
        """Class indices (int64) or standardized values (float32) for the original target values."""
        values = np.asarray(values)
        if self.task == "regression":
            return ((values.astype(np.float64) - self.mean) / self.std).astype(np.float32)
        import pandas as pd

        # pandas matches by value across types (1 == 1.0, np.int64(1)) in one vectorized lookup.
        codes = pd.Index(list(self.classes), dtype=object).get_indexer(pd.Index(values, dtype=object))
        if (codes < 0).any():
            unknown = sorted({_key(v) for v in values[codes < 0]}, key=str)
            raise UserError(f"{where or 'The data'} has labels the model never saw: {', '.join(map(str, unknown[:5]))}; "
                            f"known: {', '.join(map(str, self.classes[:20]))}.")
        return codes.astype(np.int64)

    def training_settings(self) -> dict[str, Any]:
        """What the training module needs to know of the target (keyword arguments of ExperimentModule)."""
        return {"task": self.task, "num_classes": max(self.num_classes, 2), "class_weights": self.class_weights,
                "target_scale": (self.mean, self.std) if self.task == "regression" else None}

    def describe(self) -> str:
        if self.task == "regression":
            return f"regression (standardized on the training split: mean {self.mean:.4g}, std {self.std:.4g})"
        if self.task == "binary":
            return f"binary, positive class {self.positive!r}"
        shown = ", ".join(map(repr, self.classes[:8])) + (", …" if self.num_classes > 8 else "")
        return f"multiclass, {self.num_classes} classes: {shown}"


def _key(value: Any) -> Any:
    """Labels compare by value whatever their numpy/pandas type (1 == 1.0 == np.int64(1))."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return int(value)
    return value.item() if isinstance(value, np.generic) else value


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _integer_like(values: Any) -> bool:
    return bool(np.all(np.equal(np.mod(values.astype(np.float64), 1), 0)))


def rows_with_a_target(frame: Any, name: str) -> tuple[Any, str | None]:
    """Rows whose target is empty cannot teach or score anything: left out, with a note of how many."""
    missing = frame[name].isna()
    dropped = int(missing.sum())
    if not dropped:
        return frame, None
    note = f"note: {dropped} row{'s' if dropped > 1 else ''} with an empty target {name!r} left out"
    return frame.loc[~missing].reset_index(drop=True), note


def infer_task(target: Any) -> str:
    """Text, booleans and integers with few values are classes; any other number is a quantity."""

    values = target.dropna()
    distinct = values.unique()
    if not is_number(values):
        return "binary" if len(distinct) == 2 else "multiclass"
    if _integer_like(np.asarray(distinct)) and len(distinct) <= max(MAX_AUTO_CLASSES, int(0.05 * len(values))):
        return "binary" if len(distinct) == 2 else "multiclass"
    return "regression"


def _sorted_labels(values: Any) -> list[Any]:
    distinct = [_plain(v) for v in values.unique()]
    try:
        return sorted(distinct, key=_key)
    except TypeError:  # mixed kinds (numbers and text): order by text
        return sorted(distinct, key=str)


def fit_target(target: Any, train_rows: np.ndarray, task: str, positive_class: Any = None,
               class_weight: Any = None, standardize: bool = True) -> TargetEncoding:
    """Settle the task and learn the encoding; the target must have no missing values left."""

    name = str(target.name)
    n_rows = len(target)
    if task == "auto":
        task = infer_task(target)
    numeric = is_number(target)
    if task == "regression":
        if not numeric:
            raise UserError(f"data.task='regression' needs a numeric target, but {name!r} holds text or booleans "
                            f"(e.g. {target.iloc[0]!r}).")
        train = target.to_numpy(dtype=np.float64)[train_rows]
        mean, std = (float(train.mean()), float(train.std())) if standardize else (0.0, 1.0)
        return TargetEncoding(name, task, mean=mean, std=std if std > 0 else 1.0)
    if numeric and not _integer_like(target.to_numpy()):
        raise UserError(f"data.task={task!r} needs class labels, but the target {name!r} has fractional values "
                        f"(e.g. {target[np.mod(target, 1) != 0].iloc[0]!r}); use data.task=regression.")
    labels = _sorted_labels(target)
    if len(labels) < 2:
        raise UserError(f"The target {name!r} has one class only ({labels[0]!r}): there is nothing to tell apart.")
    if task == "binary" and len(labels) != 2:
        raise UserError(f"data.task='binary' needs exactly two classes, but {name!r} has {len(labels)}.")
    if len(labels) > max(2, n_rows // MIN_ROWS_PER_CLASS):
        raise UserError(f"The target {name!r} has {len(labels)} classes in {n_rows} rows (more than one per "
                        f"{MIN_ROWS_PER_CLASS} rows); if it is a quantity, use data.task=regression.")
    if task == "binary":
        labels = _binary_order(labels, positive_class, name)
    elif positive_class is not None:
        raise UserError(f"data.positive_class is for binary targets; {name!r} has {len(labels)} classes.")
    encoding = TargetEncoding(name, task, tuple(labels))
    if class_weight is None:
        return encoding
    counts = np.bincount(encoding.encode(target.to_numpy()[train_rows]), minlength=len(labels))
    weights = _class_weights(class_weight, labels, counts)
    return TargetEncoding(name, task, tuple(labels), class_weights=weights)


def _binary_order(labels: list[Any], positive_class: Any, name: str) -> list[Any]:
    """(negative, positive): the larger label by default (1 of 0/1, True, 'yes' of 'no'/'yes')."""
    if positive_class is None:
        return labels
    matches = [label for label in labels if _key(label) == _key(positive_class) or str(label) == str(positive_class)]
    if not matches:
        raise UserError(f"data.positive_class={positive_class!r} is not a label of {name!r}; its labels are "
                        f"{labels[0]!r} and {labels[1]!r}.")
    positive = matches[0]
    return [next(label for label in labels if label is not positive), positive]


def _class_weights(setting: Any, labels: list[Any], counts: np.ndarray) -> tuple[float, ...]:
    """`balanced` (n / (k · n_class), as scikit-learn computes it) or a weight per label."""
    if setting == "balanced":
        present = np.maximum(counts, 1)
        return tuple(float(w) for w in counts.sum() / (len(labels) * present))
    if isinstance(setting, dict):
        given = {str(k): v for k, v in setting.items()}
        unknown = sorted(set(given) - {str(label) for label in labels})
        if unknown:
            raise UserError(f"data.class_weight names labels the target does not have: {', '.join(unknown)}; "
                            f"its labels are: {', '.join(map(str, labels))}.")
        weights = [given.get(str(label), 1.0) for label in labels]
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights):
            raise UserError(f"data.class_weight values must be positive numbers, got {setting}.")
        return tuple(float(w) for w in weights)
    raise UserError(f"data.class_weight must be null, balanced, or a weight per label like "
                    f"{{{labels[0]}: 1, {labels[1]}: 5}}; got {setting!r}.")
