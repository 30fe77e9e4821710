"""Whole-batch loading of in-memory tensors: one fancy-index per batch, no per-sample collate."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset


class ShuffledBatches(Sampler[torch.Tensor]):
    """Yields index tensors of one batch each; the order is a function of (seed, epoch).

    Because the permutation is recomputed from `seed + epoch`, a run resumed at epoch k sees exactly
    the batches an uninterrupted run would — no sampler state needs saving. Lightning calls
    `set_epoch` on a loader's sampler every epoch (and wraps it for DDP sharding).
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_samples)
        yield from order.split(self.batch_size)

    def __len__(self) -> int:
        return (self.num_samples + self.batch_size - 1) // self.batch_size


def batch_loader(dataset: TensorDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """`batch_size=None` turns off auto-batching: the sampler hands out whole batches of indices
    and TensorDataset indexes them in one go."""
    sampler = ShuffledBatches(len(dataset), batch_size, shuffle, seed)
    return DataLoader(dataset, batch_size=None, sampler=sampler)
