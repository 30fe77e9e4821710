"""A test-only Lightning callback, added to real runs with `+callbacks.sample_counter._target_=…`:
records the feature rows each rank sees, per stage and epoch, into `<out_dir>/<fn>-rank<r>.pt`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


class SampleCounter(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.seen: list[tuple[str, int, torch.Tensor]] = []

    def _record(self, trainer: pl.Trainer, stage: str, batch: Any) -> None:
        self.seen.append((stage, trainer.current_epoch, batch[0].detach().cpu().clone()))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._record(trainer, "train", batch)

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, f"val{dataloader_idx}", batch)

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                            batch_idx: int, dataloader_idx: int = 0) -> None:
        self._record(trainer, "test", batch)

    def _save(self, trainer: pl.Trainer, fn: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"world_size": trainer.world_size, "seen": self.seen},
                   self.out_dir / f"{fn}-rank{trainer.global_rank}.pt")
        self.seen = []

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, "fit")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, "test")
