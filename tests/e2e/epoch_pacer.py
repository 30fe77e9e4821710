"""A test-only Lightning callback, added with `+callbacks.pacer._target_=tests.e2e.epoch_pacer.EpochPacer`:
every training epoch lasts at least `seconds`, so a test can interrupt a run mid-way however fast the
machine trains. It draws no random numbers and holds no state: the numbers a run produces are unchanged.
It also leaves `pacer_started` in the run dir when training starts: by then the run's MLflow store exists, so
a test may open it (checkpoint files are no such sign: they are written at most every few seconds)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning.pytorch as pl


class EpochPacer(pl.Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        (Path(trainer.default_root_dir) / "pacer_started").touch()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        time.sleep(self.seconds)
