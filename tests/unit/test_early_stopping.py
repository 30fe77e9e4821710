"""Early stopping stops on a plateau and, like Keras' restore_best_weights, hands back the best epoch's model."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from experiments.callbacks.early_stopping import EarlyStopping
from experiments.data.datamodule import TabularDataModule
from experiments.models.mlp import build_mlp
from experiments.models.module import ExperimentModule

MAX_EPOCHS = 25


class ValLossHistory(pl.Callback):
    def __init__(self) -> None:
        self.values: dict[int, float] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.values[trainer.current_epoch] = float(trainer.callback_metrics["val/loss"])


def train_overfitting_net(tmp_path, stopper: EarlyStopping) -> tuple[pl.Trainer, ValLossHistory, float]:
    """A wide net on 80 noisy samples: val loss bottoms out within a few epochs, then climbs."""
    pl.seed_everything(0, verbose=False)
    data = TabularDataModule("make_classification", {"n_samples": 200, "n_features": 20, "flip_y": 0.3, "seed": 0},
                             split={"train": 0.4, "val": 0.6, "test": 0.0})
    net = build_mlp(data.input_dim, 1, hidden_dims=[128, 128])
    module = ExperimentModule(net, task="binary", num_classes=2, optimizer={"_target_": "torch.optim.Adam", "lr": 3e-3})
    history = ValLossHistory()
    trainer = pl.Trainer(max_epochs=MAX_EPOCHS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                         callbacks=[stopper, history])
    trainer.fit(module, datamodule=data)
    x, y = data.tensors("val").tensors
    net.eval()
    with torch.no_grad():
        final_val_loss = F.binary_cross_entropy_with_logits(net(x).squeeze(-1), y.float()).item()
    return trainer, history, final_val_loss


def test_restores_the_weights_of_the_best_epoch(tmp_path) -> None:
    stopper = EarlyStopping(monitor="val/loss", patience=3, restore_best_weights=True)
    _, history, final_val_loss = train_overfitting_net(tmp_path, stopper)
    epochs = sorted(history.values)
    best_epoch = min(epochs, key=history.values.get)
    assert len(epochs) < MAX_EPOCHS, "the run should have stopped early"
    assert epochs[-1] == best_epoch + 3 and stopper.best_epoch == best_epoch
    assert history.values[epochs[-1]] > history.values[best_epoch]
    # The model we are left with scores the best epoch's val loss, not the last one's.
    assert final_val_loss == pytest.approx(history.values[best_epoch], rel=1e-5)
    assert stopper.restored_epoch == best_epoch  # the epoch a logged model is attributed to


def test_without_restore_the_last_epochs_weights_stay(tmp_path) -> None:
    stopper = EarlyStopping(monitor="val/loss", patience=3, restore_best_weights=False)
    _, history, final_val_loss = train_overfitting_net(tmp_path, stopper)
    last = max(history.values)
    assert final_val_loss == pytest.approx(history.values[last], rel=1e-5)
    assert final_val_loss > min(history.values.values())
    assert stopper.restored_epoch is None


def test_min_delta_decides_what_counts_as_an_improvement(tmp_path) -> None:
    stopper = EarlyStopping(monitor="val/loss", patience=2, min_delta=10.0)  # no change is ever that big
    _, history, _ = train_overfitting_net(tmp_path, stopper)
    assert sorted(history.values) == [0, 1, 2] and stopper.best_epoch == 0  # the first value, then 2 misses


def test_patience_null_leaves_early_stopping_off(tmp_path) -> None:
    stopper = EarlyStopping(monitor="val/loss", patience=None)
    _, history, _ = train_overfitting_net(tmp_path, stopper)
    assert len(history.values) == MAX_EPOCHS and not stopper.enabled
