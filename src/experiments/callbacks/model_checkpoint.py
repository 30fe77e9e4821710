"""Lightning's ModelCheckpoint without a deep copy of every epoch metric at every epoch end."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Same files, names and choices as Lightning's.

    To name and rank checkpoints, Lightning deep-copies `trainer.callback_metrics` at each epoch end,
    in each checkpoint callback: ~1 ms for the ~20 scalar tensors a run publishes, two callbacks, so
    ~3 % of the seed experiment's training (interleaved A/B). `ExperimentModule` replaces those
    tensors every epoch and never changes one in place, so a shallow copy holds the same values.
    """

    def _monitor_candidates(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        candidates = dict(trainer.callback_metrics)
        # As Lightning does: epoch and step as int tensors, from the trainer when not logged.
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates
