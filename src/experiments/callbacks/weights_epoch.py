"""Which epoch's weights the module holds when fitting ends, known in the process that logs the model."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from experiments.callbacks.early_stopping import EarlyStopping

WEIGHTS_EPOCH = "_weights_epoch"  # a callback-metrics entry, not a metric: train() takes it out


class WeightsEpoch(pl.Callback):
    """Publishes, as fitting ends, the epoch of the weights it ends with (early stopping's restored epoch,
    else the last one) among the trainer's callback metrics. Under `ddp_spawn` those are what Lightning
    carries back from the rank-0 worker to the launching process, whose own module never trained."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.callback_metrics[WEIGHTS_EPOCH] = torch.tensor(float(_known_weights_epoch(trainer)))


def fitted_weights_epoch(trainer: pl.Trainer) -> int:
    """The published epoch if there is one (see `WeightsEpoch`), else the one this trainer knows."""
    published = trainer.callback_metrics.get(WEIGHTS_EPOCH)
    return int(published) if published is not None else _known_weights_epoch(trainer)


def _known_weights_epoch(trainer: pl.Trainer) -> int:
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.restored_epoch is not None:
            return callback.restored_epoch
    return trainer.current_epoch - 1
