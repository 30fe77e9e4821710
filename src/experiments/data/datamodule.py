"""The in-memory DataModule: source → arrays → split → standardize (train only) → tensors."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from experiments.data.loader import batch_loader
from experiments.data.sources import TabularData, load_source
from experiments.data.split import SplitArrays, fingerprint, split_data, standardize


class TabularDataModule(pl.LightningDataModule):
    """Loads everything once (in `__init__`, so the model can be sized from the data before fit)."""

    def __init__(
        self,
        dataset: str,
        options: dict[str, Any] | None = None,
        task: str = "auto",
        split: dict[str, float] | None = None,
        standardize_features: bool = True,
        batch_size: int = 32,
        eval_batch_size: int = 1024,
        split_seed: int = 0,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        fractions = {"train": 0.7, "val": 0.15, "test": 0.15, **(split or {})}
        self.dataset_name = dataset
        self.source: TabularData = load_source(dataset, dict(options or {}), task)
        arrays = split_data(self.source, fractions["train"], fractions["val"], fractions["test"], split_seed)
        self.arrays: SplitArrays = standardize(arrays) if standardize_features else arrays
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle_seed = shuffle_seed
        self.fingerprint = fingerprint(self.source)
        self._tensors = {
            stage: TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
            for stage, (x, y) in {
                "train": (self.arrays.x_train, self.arrays.y_train),
                "val": (self.arrays.x_val, self.arrays.y_val),
                "test": (self.arrays.x_test, self.arrays.y_test),
            }.items()
        }

    @property
    def task(self) -> str:
        return self.source.task

    @property
    def input_dim(self) -> int:
        return int(self.source.features.shape[1])

    @property
    def num_outputs(self) -> int:
        """Head width: one logit for binary and regression, one per class for multiclass."""
        return self.source.num_classes if self.task == "multiclass" else 1

    def tensors(self, stage: str) -> TensorDataset:
        return self._tensors[stage]

    def train_dataloader(self) -> DataLoader:
        return batch_loader(self._tensors["train"], self.batch_size, shuffle=True, seed=self.shuffle_seed)

    def val_dataloader(self) -> list[DataLoader]:
        """Validation split first; then the training split again, evaluated in eval mode so the
        train/val gap compares like with like (no dropout, no input noise)."""
        return [
            batch_loader(self._tensors["val"], self.eval_batch_size, shuffle=False, seed=0),
            batch_loader(self._tensors["train"], self.eval_batch_size, shuffle=False, seed=0),
        ]

    def test_dataloader(self) -> DataLoader:
        return batch_loader(self._tensors["test"], self.eval_batch_size, shuffle=False, seed=0)

    def describe(self) -> dict[str, Any]:
        """What a run records about its data (for params, tags and reproduction checks)."""
        return {
            "dataset": self.dataset_name,
            "task": self.task,
            "n_features": self.input_dim,
            "n_classes": self.source.num_classes,
            "fingerprint": self.fingerprint,
            **{f"n_{k}": v for k, v in self.arrays.sizes.items()},
        }
