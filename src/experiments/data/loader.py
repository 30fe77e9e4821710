"""Whole-batch loading of in-memory tensors: one fancy-index per batch, no per-sample collate."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


class ShuffledBatches(DistributedSampler):
    """Yields index tensors of one batch each; the order is a function of (seed, epoch, rank).

    Because the permutation is recomputed from `seed + epoch`, a run resumed at epoch k sees exactly
    the batches an uninterrupted run would — no sampler state needs saving. Lightning calls
    `set_epoch` on a loader's sampler every epoch.

    With several ranks (DDP), every rank draws the same global permutation and takes its own slice of
    each global step of `batch_size × num_replicas` samples, so each sample is seen once per epoch
    across ranks and every rank runs the same number of steps (DDP all-reduces gradients each step).
    Sharding happens here, per sample, rather than by Lightning's injected wrapper, which shards whole
    batches: a validation split that fits in one batch would be evaluated by every rank. Being a
    `DistributedSampler` is what tells Lightning the loader is sharded already.
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, equal_steps: bool = True) -> None:
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.dataset_size = num_samples
        self.batch_size = batch_size
        # Training needs a batch on every rank at every step; when the last step holds fewer samples than
        # ranks, the empty ranks repeat a sample. Evaluation skips instead, so no sample counts twice.
        self.equal_steps = equal_steps

    def _global_order(self) -> torch.Tensor:
        if self.shuffle:
            return torch.randperm(self.dataset_size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return torch.arange(self.dataset_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self._global_order()
        if self.num_replicas == 1:
            yield from order.split(self.batch_size)
            return
        for step in order.split(self.batch_size * self.num_replicas):
            share = step.tensor_split(self.num_replicas)[self.rank]
            if len(share) == 0:
                if not self.equal_steps:
                    continue
                share = order[self.rank % self.dataset_size : self.rank % self.dataset_size + 1]
            yield share

    def __len__(self) -> int:
        if self.num_replicas == 1:
            return (self.dataset_size + self.batch_size - 1) // self.batch_size
        step = self.batch_size * self.num_replicas
        steps = (self.dataset_size + step - 1) // step
        last = self.dataset_size - (steps - 1) * step if steps else 0
        if steps and not self.equal_steps and self.rank >= last:
            return steps - 1
        return steps


def batch_loader(dataset: TensorDataset, batch_size: int, shuffle: bool, seed: int, num_replicas: int = 1,
                 rank: int = 0, equal_steps: bool = True) -> DataLoader:
    """`batch_size=None` turns off auto-batching: the sampler hands out whole batches of indices
    and TensorDataset indexes them in one go. `batch_size` is per rank, as in Lightning."""
    sampler = ShuffledBatches(len(dataset), batch_size, shuffle, seed, num_replicas, rank, equal_steps)
    # Its own generator: creating an iterator draws a worker base seed, which would otherwise advance the
    # global RNG that dropout and input noise use, and a resumed run creates its first iterator earlier.
    return DataLoader(dataset, batch_size=None, sampler=sampler, generator=torch.Generator().manual_seed(seed))


class MemberBatches(ShuffledBatches):
    """The batches of several runs at once, one row of indices per member: step i of member k is the
    i-th batch a run alone with shuffle seed `seeds[k]` would draw (one device, see `ShuffledBatches`)."""

    def __init__(self, num_samples: int, batch_size: int, seeds: list[int]) -> None:
        super().__init__(num_samples, batch_size, shuffle=True, seed=seeds[0])
        self.seeds = list(seeds)

    def __iter__(self) -> Iterator[torch.Tensor]:
        orders = [torch.randperm(self.dataset_size, generator=torch.Generator().manual_seed(seed + self.epoch))
                  for seed in self.seeds]
        yield from torch.stack(orders).split(self.batch_size, dim=1)


def member_batch_loader(dataset: TensorDataset, batch_size: int, seeds: list[int]) -> DataLoader:
    """Per step, `x` of shape [members, batch, features] and `y` of [members, batch]."""
    sampler = MemberBatches(len(dataset), batch_size, seeds)
    return DataLoader(dataset, batch_size=None, sampler=sampler, generator=torch.Generator().manual_seed(seeds[0]))
