"""Checkpoint writes throttled in time (`checkpoint_every_s`): the files a run leaves are those of the
right epochs, whether they were written at once or held in memory until fitting ended."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import pytest
import torch

from experiments.errors import UserError
from experiments.train import train
from experiments.validation import validate_config

QUICK = ["logger=none", "callbacks.learning_curve=null", "data.options.n_samples=300", "test=false",
         "trainer.max_epochs=4", "+callbacks.probe._target_=tests.unit.test_checkpoint_io.CheckpointProbe"]


class CheckpointProbe(pl.Callback):
    """Records, at each epoch start, which epoch `last.ckpt` on disk holds, and each epoch's weights."""

    seen: ClassVar[list[int | None]] = []
    weights: ClassVar[dict[int, dict[str, torch.Tensor]]] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        on_disk = torch.load(last, weights_only=True)["epoch"] if last.exists() else None
        CheckpointProbe.seen.append(on_disk)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        CheckpointProbe.weights[trainer.current_epoch] = {k: v.detach().clone()
                                                         for k, v in pl_module.state_dict().items()}


def _train(compose_cfg: Any, overrides: list[str]) -> tuple[dict[str, float], Path]:
    CheckpointProbe.seen, CheckpointProbe.weights = [], {}
    cfg = compose_cfg([*QUICK, *overrides])
    with redirect_stdout(io.StringIO()):
        metrics = train(cfg)
    return metrics, Path(cfg.paths.run_dir) / "checkpoints"


def _state(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


def test_checkpoints_wait_in_memory_and_land_with_the_right_epochs_when_fitting_ends(compose_cfg: Any) -> None:
    # A high learning rate on random labels overfits at once: the best epoch is an early one.
    metrics, directory = _train(compose_cfg, ["checkpoint_every_s=3600", "optimizer.lr=0.05"])
    assert CheckpointProbe.seen == [None, None, None, None]  # nothing written while training

    last = _state(directory / "last.ckpt")
    assert last["epoch"] == 3
    for name, tensor in CheckpointProbe.weights[3].items():
        assert torch.equal(last["state_dict"][name], tensor), name

    (best_file,) = directory.glob("best-*.ckpt")  # superseded best checkpoints never reached the disk
    best = _state(best_file)
    best_epoch = int(metrics["val/loss_best_epoch"])
    assert best["epoch"] == best_epoch < 3
    assert best_file.name == f"best-epoch{best_epoch:03d}.ckpt"  # named from that epoch's metrics
    for name, tensor in CheckpointProbe.weights[best_epoch].items():
        assert torch.equal(best["state_dict"][name], tensor), name  # that epoch's weights, not later ones


def test_checkpoint_every_s_zero_writes_after_every_epoch(compose_cfg: Any) -> None:
    _train(compose_cfg, ["checkpoint_every_s=0"])
    assert CheckpointProbe.seen == [None, 0, 1, 2]


@pytest.mark.parametrize("value", [-1, "often"])
def test_a_bad_checkpoint_interval_is_refused_in_one_sentence(compose_cfg: Any, value: Any) -> None:
    with pytest.raises(UserError, match=r"checkpoint_every_s must be a number of seconds >= 0"):
        validate_config(compose_cfg([f"checkpoint_every_s={value}"]))


def test_the_in_memory_checkpoint_keeps_the_saved_state_when_training_goes_on() -> None:
    """What the next steps change in place (weights, optimizer moments, a callback's dicts and lists)
    must not reach the copy held for writing later; immutable leaves may be shared."""
    from collections import OrderedDict

    from experiments.checkpoint_io import _detached_copy

    weights = OrderedDict(weight=torch.ones(2))
    weights._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    rng = (3, tuple(range(625)), None)
    live = {"state_dict": weights, "best_k_models": {"a.ckpt": torch.tensor(0.5)}, "history": [1.0, 2.0],
            "moments": [{"exp_avg": torch.zeros(2)}], "rng": rng, "epoch": 4, "name": "last"}
    saved = _detached_copy(live)

    weights["weight"].add_(1)
    live["best_k_models"]["b.ckpt"] = torch.tensor(0.4)
    live["history"].append(3.0)
    live["moments"][0]["exp_avg"].add_(1)
    assert saved["state_dict"]["weight"].tolist() == [1.0, 1.0]
    assert isinstance(saved["state_dict"], OrderedDict) and saved["state_dict"]._metadata == {"": {"version": 1}}
    assert list(saved["best_k_models"]) == ["a.ckpt"] and saved["history"] == [1.0, 2.0]
    assert saved["moments"][0]["exp_avg"].tolist() == [0.0, 0.0]
    assert saved["rng"] == rng and saved["epoch"] == 4 and saved["name"] == "last"
