"""Where data comes from: a raw table (features and target as columns, as read) for every dataset.

The built-in sets are scikit-learn's bundled or generated ones (no download at run time); `csv` is the
user's own file (CSV or Parquet, see readers.py). Everything after this — column roles, the split, the
preprocessing pipeline — is the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments import choices
from experiments.data.columns import COLUMN_KEYS
from experiments.data.readers import READER_KEYS, read_table
from experiments.errors import UserError

BUILTIN_TARGET = "target"


@dataclass(frozen=True)
class RawTable:
    frame: Any  # pandas DataFrame: every column as read, the target among them
    target: str
    task_hint: str = "auto"  # a built-in set's own task (diabetes is a regression of integer values)


def _seed_random(n_samples: int = 1000, n_features: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The seed tutorial's data: uniform [0, 1) features, random 0/1 labels (np.random.random / randint)."""
    rng = np.random.default_rng(seed)
    return rng.random((n_samples, n_features)), rng.integers(0, 2, size=n_samples)


def _sklearn_loader(name: str) -> Callable[..., Any]:
    def load() -> Any:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        return bunch.frame.rename(columns={bunch.target.name: BUILTIN_TARGET})

    return load


def _make_classification(n_samples: int = 200, n_features: int = 20, n_informative: int = 5, n_classes: int = 2,
                         flip_y: float = 0.1, class_sep: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(n_samples=n_samples, n_features=n_features, n_informative=n_informative,
                               n_redundant=0, n_classes=n_classes, flip_y=flip_y, class_sep=class_sep,
                               random_state=seed)


def _make_moons(n_samples: int = 300, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n_samples, noise=noise, random_state=seed)


_BUILTIN_TASKS = {"diabetes": "regression"}
_LOADERS: dict[str, Callable[..., Any]] = {
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


def _as_frame(loaded: Any) -> Any:
    """Generated arrays → a table with columns x0, x1, … and `target`."""
    import pandas as pd

    if isinstance(loaded, pd.DataFrame):
        return loaded
    x, y = loaded
    frame = pd.DataFrame(np.asarray(x), columns=[f"x{i}" for i in range(np.shape(x)[1])])
    frame[BUILTIN_TARGET] = np.asarray(y)
    return frame


def split_options(dataset: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the source's own options, the column options); an option neither takes is refused."""
    columns = {k: v for k, v in options.items() if k in COLUMN_KEYS}
    own = {k: v for k, v in options.items() if k not in COLUMN_KEYS}
    if dataset == "csv":
        unknown = [k for k in own if k not in READER_KEYS]
        if unknown:
            raise UserError(f"data.options.{unknown[0]} is not an option of data=csv; the options are: "
                            f"{', '.join((*READER_KEYS, *COLUMN_KEYS))}.")
    elif "target" in columns:
        raise UserError(f"data.options.target is for data=csv; {dataset!r} has its own target column.")
    return own, columns


def load_source(dataset: str, options: dict[str, Any]) -> RawTable:
    """The raw table `dataset` with its `options` names."""
    own, columns = split_options(dataset, options)
    if dataset == "csv":
        if not own.get("path") or not columns.get("target"):
            raise UserError("data=csv needs data.options.path and data.options.target.")
        frame = read_table(**own)
        target = str(columns["target"])
        if target not in frame.columns:
            raise UserError(f"{own['path']!r} has no target column {target!r}; its columns are: "
                            f"{', '.join(map(str, frame.columns))}.")
        return RawTable(frame, target)
    if dataset not in _LOADERS:
        raise UserError(f"data.dataset={dataset!r} is not known; choose one of: {', '.join(choices.DATASETS)}.")
    try:
        loaded = _LOADERS[dataset](**own)
    except TypeError as err:
        raise UserError(f"data.options for {dataset!r} are invalid: {err}.") from None
    return RawTable(_as_frame(loaded), BUILTIN_TARGET, _BUILTIN_TASKS.get(dataset, "auto"))
