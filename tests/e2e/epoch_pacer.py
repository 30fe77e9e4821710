"""A test-only Lightning callback, added with `+callbacks.pacer._target_=tests.e2e.epoch_pacer.EpochPacer`:
every training epoch lasts at least `seconds`, so a test can interrupt a run mid-way however fast the
machine trains. It draws no random numbers and holds no state: the numbers a run produces are unchanged."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class EpochPacer(pl.Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        time.sleep(self.seconds)
