"""Where data comes from: each source returns float features, targets and the task they imply.

Everything here is numpy/scikit-learn; no download happens at run time (sklearn ships these sets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments import choices
from experiments.errors import UserError


@dataclass(frozen=True)
class TabularData:
    features: np.ndarray  # (n, d) float32
    targets: np.ndarray  # (n,) int64 class ids or float32 values
    task: str  # binary | multiclass | regression
    feature_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return int(self.targets.max()) + 1 if self.task != "regression" else 0


def _seed_random(n_samples: int = 1000, n_features: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The seed tutorial's data: uniform [0, 1) features, random 0/1 labels (np.random.random / randint)."""
    rng = np.random.default_rng(seed)
    return rng.random((n_samples, n_features)), rng.integers(0, 2, size=n_samples)


def _sklearn_loader(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        return bunch.data, bunch.target

    return load


def _make_classification(
    n_samples: int = 200,
    n_features: int = 20,
    n_informative: int = 5,
    n_classes: int = 2,
    flip_y: float = 0.1,
    class_sep: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        flip_y=flip_y,
        class_sep=class_sep,
        random_state=seed,
    )


def _make_moons(n_samples: int = 300, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n_samples, noise=noise, random_state=seed)


_BUILTIN_TASKS = {"diabetes": "regression"}
_LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "seed_random": _seed_random,
    "breast_cancer": _sklearn_loader("breast_cancer"),
    "digits": _sklearn_loader("digits"),
    "wine": _sklearn_loader("wine"),
    "iris": _sklearn_loader("iris"),
    "diabetes": _sklearn_loader("diabetes"),
    "make_classification": _make_classification,
    "make_moons": _make_moons,
}
assert set(_LOADERS) | {"csv"} == set(choices.DATASETS), "choices.DATASETS and the loaders drifted apart"


def infer_task(targets: np.ndarray) -> str:
    """Integer-like targets with few distinct values are classes; anything else is regression."""
    values = np.unique(targets)
    if not np.issubdtype(values.dtype, np.number):  # text labels are classes
        return "binary" if len(values) == 2 else "multiclass"
    integer_like = np.all(np.equal(np.mod(values, 1), 0))
    if integer_like and len(values) <= max(20, int(0.05 * len(targets))):
        return "binary" if len(values) == 2 else "multiclass"
    return "regression"


def _encode_targets(targets: np.ndarray, task: str) -> np.ndarray:
    if task == "regression":
        return targets.astype(np.float32)
    # Map arbitrary labels (strings, {-1, 1}, …) onto 0..k-1 so heads and losses can index them.
    _, encoded = np.unique(targets, return_inverse=True)
    return encoded.astype(np.int64)


def csv_file(path: str, setting: str = "data.options.path") -> Path:
    """The file `path` names, refused in the words the user typed (`setting=path`) unless it is one."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise UserError(f"{setting}={path}: that is a directory, not a CSV file.")
    if not file.is_file():
        raise UserError(f"{setting}={path}: CSV file {str(file)!r} does not exist.")
    return file


def load_csv(path: str, target: str, features: Sequence[str] | None = None,
             setting: str = "data.options.path") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    import pandas as pd

    file = csv_file(path, setting)
    try:
        frame = pd.read_csv(file)
    except Exception as err:  # noqa: BLE001 - pandas raises many parser types; the user needs the file and why
        raise UserError(f"Could not read CSV {str(file)!r}: {err}.") from None
    if target not in frame.columns:
        raise UserError(
            f"CSV {file.name!r} has no target column {target!r}; its columns are: {', '.join(map(str, frame.columns))}."
        )
    names = list(features) if features else [c for c in frame.columns if c != target]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise UserError(f"CSV {file.name!r} lacks feature columns: {', '.join(missing)}.")
    non_numeric = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise UserError(
            f"CSV {file.name!r} has non-numeric feature columns: {', '.join(non_numeric)}; "
            "encode them as numbers or leave them out with data.options.features."
        )
    if frame[names + [target]].isna().any().any():
        raise UserError(f"CSV {file.name!r} has empty cells; fill or drop them first.")
    return frame[names].to_numpy(), frame[target].to_numpy(), tuple(map(str, names))


def load_source(dataset: str, options: dict[str, Any], task: str = "auto") -> TabularData:
    """Load `dataset` with its `options` and settle the task (given, or inferred from the targets)."""
    if dataset == "csv":
        opts = dict(options)
        if "path" not in opts or "target" not in opts:
            raise UserError("data=csv needs data.options.path and data.options.target.")
        x, y, names = load_csv(opts["path"], opts["target"], opts.get("features"))
    elif dataset in _LOADERS:
        try:
            x, y = _LOADERS[dataset](**options)
        except TypeError as err:
            raise UserError(f"data.options for {dataset!r} are invalid: {err}.") from None
        names = tuple(f"x{i}" for i in range(x.shape[1]))
    else:
        raise UserError(f"data.dataset={dataset!r} is not known; choose one of: {', '.join(choices.DATASETS)}.")
    if task == "auto":
        task = _BUILTIN_TASKS.get(dataset) or infer_task(y)
    if (task != "regression" and dataset != "csv" and np.issubdtype(np.asarray(y).dtype, np.floating)
            and not np.all(np.equal(np.mod(y, 1), 0))):
        raise UserError(f"data.task={task!r} needs class labels but {dataset!r} has continuous targets.")
    targets = _encode_targets(np.asarray(y), task)
    if task == "binary" and len(np.unique(targets)) != 2:
        raise UserError(f"data.task='binary' needs exactly two classes, found {len(np.unique(targets))}.")
    return TabularData(np.asarray(x, dtype=np.float32), targets, task, names)
