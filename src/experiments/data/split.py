"""Deterministic train/val/test split of row indices, and the table's content fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SplitArrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def split_rows(targets: np.ndarray, classes: bool, train: float, val: float, test: float,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of each split: shuffled once with `seed`, cut by fractions (sum <= 1; the rest is
    left out). Classification splits are stratified so a small train fraction keeps every class."""
    from sklearn.model_selection import train_test_split

    n = len(targets)
    stratify = targets if classes else None
    n_train, n_val = round(train * n), round(val * n)
    # Fractions that sum to 1 use every sample: rounding must not leave a stray row out.
    n_test = n - n_train - n_val if train + val + test >= 1 - 1e-9 else round(test * n)
    n_test = max(0, min(n_test, n - n_train - n_val))

    def cut(idx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """`size` samples of `idx` (stratified when classes allow it) and the rest."""
        if size == 0:
            return idx[:0], idx
        if size >= len(idx):
            return idx, idx[:0]
        strat = stratify[idx] if stratify is not None else None
        try:
            return tuple(train_test_split(idx, train_size=size, random_state=seed, stratify=strat))  # type: ignore[return-value]
        except ValueError:  # too few members of a class to stratify: fall back to a plain shuffle
            return tuple(train_test_split(idx, train_size=size, random_state=seed))  # type: ignore[return-value]

    used, _ = cut(np.arange(n), n_train + n_val + n_test)
    train_idx, rest = cut(used, n_train)
    val_idx, test_idx = cut(rest, n_val)
    return train_idx, val_idx, test_idx


def fingerprint(frame: Any) -> str:
    """Content hash of the raw table (names, types, values): the same data gives the same digest anywhere."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
