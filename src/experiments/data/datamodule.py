"""The in-memory DataModule: source → arrays → split → standardize (train only) → tensors."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from experiments.data.loader import batch_loader
from experiments.data.placement import (
    check_policy,
    dataset_bytes,
    free_device_bytes,
    on_device,
    should_keep_on_device,
)
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
        eval_batch_size: int | str = "auto",
        split_seed: int = 0,
        shuffle_seed: int = 0,
        keep_on_device: bool | str = "auto",
        train_eval_size: int | None = 2048,
    ) -> None:
        super().__init__()
        fractions = {"train": 0.7, "val": 0.15, "test": 0.15, **(split or {})}
        self.dataset_name = dataset
        self.source: TabularData = load_source(dataset, dict(options or {}), task)
        arrays = split_data(self.source, fractions["train"], fractions["val"], fractions["test"], split_seed)
        self.arrays: SplitArrays = standardize(arrays) if standardize_features else arrays
        self.batch_size = batch_size
        # `auto` depends on the model's width: train() and `experiments eval` set it (see runtime.py).
        self.eval_batch_size = 8192 if eval_batch_size == "auto" else int(eval_batch_size)
        self.shuffle_seed = shuffle_seed
        check_policy(keep_on_device)
        self.keep_on_device = keep_on_device
        self.fingerprint = fingerprint(self.source)
        self._tensors = {
            stage: TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
            for stage, (x, y) in {
                "train": (self.arrays.x_train, self.arrays.y_train),
                "val": (self.arrays.x_val, self.arrays.y_val),
                "test": (self.arrays.x_test, self.arrays.y_test),
            }.items()
        }
        # Train metrics come from an eval-mode pass over (a fixed, seeded subset of) the training split:
        # the whole split would add a third of an epoch's compute on big data for a tiny gain in precision.
        train_x, train_y = self._tensors["train"].tensors
        if train_eval_size is not None and len(train_y) > train_eval_size:
            keep = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(split_seed))[:train_eval_size]
            keep = keep.sort().values
            self._tensors["train_eval"] = TensorDataset(train_x[keep], train_y[keep])
        else:
            self._tensors["train_eval"] = self._tensors["train"]
        self.steps_per_item = 1  # optimizer steps per training item; set by train() for small models
        self._loader_tensors = self._tensors  # replaced by device copies in `setup` when they fit

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch on one device: batches of the training split."""
        return -(-self.arrays.sizes["train"] // self.batch_size)

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        nbytes = dataset_bytes(self._tensors)
        if should_keep_on_device(self.keep_on_device, device, nbytes, free_device_bytes(device)):
            self._loader_tensors = on_device(self._tensors, device)

    def teardown(self, stage: str) -> None:
        self._loader_tensors = self._tensors

    def _shard(self) -> dict[str, int]:
        """This process's share of each split under DDP (the loaders shard per sample, see loader.py)."""
        if self.trainer is None:
            return {"num_replicas": 1, "rank": 0}
        return {"num_replicas": self.trainer.world_size, "rank": self.trainer.global_rank}

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
        return batch_loader(self._loader_tensors["train"], self.batch_size, shuffle=True, seed=self.shuffle_seed,
                            steps_per_item=self.steps_per_item, **self._shard())

    def val_dataloader(self) -> list[DataLoader]:
        """Validation split first; then the training split again, evaluated in eval mode so the
        train/val gap compares like with like (no dropout, no input noise)."""
        return [
            batch_loader(self._loader_tensors["val"], self.eval_batch_size, shuffle=False, seed=0,
                         equal_steps=False, **self._shard()),
            batch_loader(self._loader_tensors["train_eval"], self.eval_batch_size, shuffle=False, seed=0,
                         equal_steps=False, **self._shard()),
        ]

    def test_dataloader(self) -> DataLoader:
        return batch_loader(self._loader_tensors["test"], self.eval_batch_size, shuffle=False, seed=0,
                            equal_steps=False, **self._shard())

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
