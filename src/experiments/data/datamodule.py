"""The in-memory DataModule: raw table → column roles → split → preprocessing fitted on train → tensors."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from experiments.data.columns import ColumnPlan, is_number, plan_columns
from experiments.data.loader import batch_loader, member_batch_loader
from experiments.data.placement import (
    check_policy,
    dataset_bytes,
    free_device_bytes,
    on_device,
    should_keep_on_device,
)
from experiments.data.preparation import TablePreparation, refuse_empty_cells
from experiments.data.preprocessing import build_preprocessor
from experiments.data.sources import RawTable, load_source, split_options
from experiments.data.split import SplitArrays, fingerprint, split_rows
from experiments.data.targets import fit_target, rows_with_a_target
from experiments.errors import UserError


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
        impute: bool = True,
        min_frequency: float | None = 0.01,
        positive_class: Any = None,
        class_weight: Any = None,
        standardize_target: bool = True,
    ) -> None:
        super().__init__()
        fractions = {"train": 0.7, "val": 0.15, "test": 0.15, **(split or {})}
        self.dataset_name = dataset
        options = dict(options or {})
        raw: RawTable = load_source(dataset, options)
        self.fingerprint = fingerprint(raw.frame)
        if raw.frame[raw.target].isna().all():
            raise UserError(f"The target column {raw.target!r} has no values.")
        frame, dropped = rows_with_a_target(raw.frame, raw.target)
        self.notes = [dropped] if dropped else []
        target = frame[raw.target]
        task = raw.task_hint if task == "auto" and raw.task_hint != "auto" else task
        # The task and labels come from every row; statistics (scaling, class weights) from training rows only.
        labels = fit_target(target, np.arange(len(frame)), task, positive_class, None, standardize=False)
        rows = split_rows(labels.encode(target.to_numpy()), labels.task != "regression", fractions["train"],
                          fractions["val"], fractions["test"], split_seed)
        encoding = fit_target(target, rows[0], labels.task, positive_class, class_weight, standardize_target)
        _, column_options = split_options(dataset, options)
        note = encoding.describe()
        if task == "auto" and raw.task_hint == "auto" and encoding.task == "multiclass" and is_number(target):
            note += f" (integer labels; data.task=regression if {raw.target!r} is a quantity)"
        plan: ColumnPlan = plan_columns(frame, {**column_options, "target": raw.target}, note)
        if not impute:
            refuse_empty_cells(frame[plan.features], f"The {dataset} table")
        preprocessor = build_preprocessor(plan, impute, standardize_features, min_frequency)
        preprocessor.fit(frame.iloc[rows[0]][plan.features])
        self.preparation = TablePreparation(plan, preprocessor, encoding,
                                            {name: str(frame[name].dtype) for name in plan.features}, impute)
        self.frame = frame  # the raw rows, for the logged model's example and the dataset record
        self.rows = dict(zip(("train", "val", "test"), rows))
        parts = [(self.preparation.features(frame.iloc[idx]) if len(idx) else
                  np.empty((0, len(self.preparation.output_names)), np.float32),
                  encoding.encode(target.to_numpy()[idx])) for idx in rows]
        self.arrays = SplitArrays(*parts[0], *parts[1], *parts[2])
        self.batch_size = batch_size
        # `auto` depends on the model's width: train() and `experiments eval` set it (see sizing.py).
        self.eval_batch_size = 8192 if eval_batch_size == "auto" else int(eval_batch_size)
        self.shuffle_seed = shuffle_seed
        check_policy(keep_on_device)
        self.keep_on_device = keep_on_device
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
        self._loader_tensors = self._tensors  # replaced by device copies in `setup` when they fit
        # Set for a population (see experiments.population): one shuffle seed per member.
        self.member_seeds: list[int] = []

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
    def target(self) -> Any:
        return self.preparation.target

    @property
    def task(self) -> str:
        return self.target.task

    @property
    def num_classes(self) -> int:
        return self.target.num_classes

    @property
    def input_dim(self) -> int:
        return int(self.arrays.x_train.shape[1])

    @property
    def num_outputs(self) -> int:
        """Head width: one logit for binary and regression, one per class for multiclass."""
        return self.num_classes if self.task == "multiclass" else 1

    def example_rows(self, count: int = 5) -> Any:
        """A few raw validation rows (the model's input example): the columns it reads, as read."""
        return self.frame.iloc[self.rows["val"][:count]][self.preparation.columns].reset_index(drop=True)

    def report(self) -> str:
        """What the data became, printed before training: rows, notes, and each column's role."""
        sizes = ", ".join(f"{name} {size}" for name, size in self.arrays.sizes.items())
        lines = [f"Data {self.dataset_name!r}: {len(self.frame)} rows ({sizes}), {self.input_dim} model inputs",
                 *self.notes, self.preparation.plan.table()]
        return "\n".join(lines)

    def tensors(self, stage: str) -> TensorDataset:
        return self._tensors[stage]

    def train_dataloader(self) -> DataLoader:
        if self.member_seeds:  # a population: each member's batches, in the order a run alone draws them
            return member_batch_loader(self._loader_tensors["train"], self.batch_size, self.member_seeds)
        return batch_loader(self._loader_tensors["train"], self.batch_size, shuffle=True, seed=self.shuffle_seed,
                            **self._shard())

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
            "n_columns": len(self.preparation.columns),
            "n_classes": self.num_classes,
            "fingerprint": self.fingerprint,
            **{f"n_{k}": v for k, v in self.arrays.sizes.items()},
        }
