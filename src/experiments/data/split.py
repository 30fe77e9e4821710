"""Deterministic train/val/test split and train-only standardization."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from experiments.data.sources import TabularData


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


def split_data(data: TabularData, train: float, val: float, test: float, seed: int) -> SplitArrays:
    """Shuffle once with `seed` and cut by fractions (sum <= 1; the rest is left out).

    Classification splits are stratified so a small train fraction keeps every class.
    """
    from sklearn.model_selection import train_test_split

    n = len(data.targets)
    stratify = data.targets if data.task != "regression" else None
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
    x, y = data.features, data.targets
    return SplitArrays(x[train_idx], y[train_idx], x[val_idx], y[val_idx], x[test_idx], y[test_idx])


def standardize(split: SplitArrays) -> SplitArrays:
    """Scale every split with the mean/std of the training split only (no leakage from val/test)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(split.x_train)

    def apply(x: np.ndarray) -> np.ndarray:
        return scaler.transform(x).astype(np.float32) if len(x) else x

    return SplitArrays(
        apply(split.x_train), split.y_train, apply(split.x_val), split.y_val, apply(split.x_test), split.y_test
    )


def fingerprint(data: TabularData) -> str:
    """Content hash of the arrays: the same data gives the same digest on any machine."""
    digest = hashlib.sha256()
    for array in (data.features, data.targets):
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]
