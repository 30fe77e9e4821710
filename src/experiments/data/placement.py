"""Keeping the whole dataset on the accelerator, so no batch is copied from the host.

The splits of a tabular dataset are usually megabytes; on a GPU, copying every batch from host memory
costs more than the MLP's forward pass. When the splits fit comfortably, they move to the device once,
at setup, and each batch is then a fancy-index into device memory.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from experiments.errors import UserError

# Share of the device's free memory the data may take; the rest is for weights, activations, optimizer.
DEVICE_MEMORY_SHARE = 0.25


def dataset_bytes(datasets: dict[str, TensorDataset]) -> int:
    return sum(t.numel() * t.element_size() for ds in datasets.values() for t in ds.tensors)


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device; None where it cannot be asked (other device kinds)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def check_policy(policy: Any) -> None:
    if not (policy == "auto" or isinstance(policy, bool)):
        raise UserError(f"data.keep_on_device must be auto, true or false, got {policy!r}.")


def should_keep_on_device(policy: Any, device: torch.device, nbytes: int, free_bytes: int | None) -> bool:
    """`auto`: on CUDA when the data takes under a quarter of the free memory; `true`: on any
    accelerator (CUDA, MPS); `false`: never. CPU needs no move, and XLA devices are fed per step by
    Lightning's XLA loader, so neither keeps data here."""
    check_policy(policy)
    if policy is False or device.type not in ("cuda", "mps"):
        return False
    if policy is True:
        return True
    return device.type == "cuda" and free_bytes is not None and nbytes <= DEVICE_MEMORY_SHARE * free_bytes


def on_device(datasets: dict[str, TensorDataset], device: torch.device) -> dict[str, TensorDataset]:
    """Copies of the splits on `device` (the host copies stay, for model examples and evaluation)."""
    return {name: TensorDataset(*(t.to(device) for t in ds.tensors)) for name, ds in datasets.items()}
