"""Each rank of a gloo (CPU) job destroys its process group as its process exits, as PyTorch asks of every
process that initialized one. Lightning does so for NCCL only; left to the interpreter's teardown, gloo's
threads now and then abort a `ddp_spawn` rank whose work is done ("terminate called without an active
exception", SIGABRT), failing a run that had finished."""

from __future__ import annotations

import atexit

import lightning.pytorch as pl
import torch.distributed as dist

_registered = False


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def destroy_gloo_group_at_exit() -> None:
    """Once per process, if it holds a gloo process group: destroy it before the interpreter tears down."""
    global _registered
    if _registered or not dist.is_available() or not dist.is_initialized() or dist.get_backend() != "gloo":
        return
    atexit.register(_destroy)  # atexit runs while the interpreter is whole: before a spawned rank's teardown
    _registered = True


class ProcessGroupCloser(pl.Callback):
    """Runs in every rank once Lightning has joined it to the group (each `fit` / `test` sets up anew)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        destroy_gloo_group_at_exit()
