"""Training controls under Lightning's own loop: a user's callbacks and Trainer flags (gradient hooks,
accumulation, max_steps, limit_train_batches, clipping), schedulers and the seed's loss-threshold stop."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from typing import ClassVar

import lightning.pytorch as pl
import pytest
import torch

from experiments.train import train

QUICK = ["logger=none", "callbacks.learning_curve=null", "data.options.n_samples=200", "test=false"]


def _train(compose_cfg, overrides: list[str]) -> dict[str, float]:
    with redirect_stdout(io.StringIO()):
        return train(compose_cfg([*QUICK, *overrides]))


def _run_end(monkeypatch: pytest.MonkeyPatch, compose_cfg, overrides: list[str]) -> dict:
    """Train; return the first layer's weights and the epoch count as the run ended."""
    from experiments.models import module as module_file

    seen: dict = {}
    original = module_file.ExperimentModule.on_train_end

    def remember(self):  # type: ignore[no-untyped-def]
        seen.update(weights=self.net[0].weight.detach().clone(), epochs=self.current_epoch,
                    steps=self.trainer.global_step)
        return original(self)

    monkeypatch.setattr(module_file.ExperimentModule, "on_train_end", remember, raising=False)
    seen["metrics"] = _train(compose_cfg, overrides)
    # Unhook, or a second run in the same test would also write into this run's record through `original`.
    monkeypatch.setattr(module_file.ExperimentModule, "on_train_end", original, raising=False)
    return seen


def _final_weights(monkeypatch: pytest.MonkeyPatch, compose_cfg, overrides: list[str]) -> torch.Tensor:
    return _run_end(monkeypatch, compose_cfg, overrides)["weights"]


class GradientWatcher(pl.Callback):
    """A user's callback, added from the command line, that watches gradients and optimizer steps."""

    seen: ClassVar[dict[str, int]] = {}

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        GradientWatcher.seen["backward"] = GradientWatcher.seen.get("backward", 0) + 1
        assert all(p.grad is not None for p in pl_module.parameters())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        GradientWatcher.seen["steps"] = GradientWatcher.seen.get("steps", 0) + 1


WATCHER = [f"+callbacks.watcher._target_={__name__}.GradientWatcher"]


def test_a_users_gradient_callback_sees_every_backward_and_step(monkeypatch: pytest.MonkeyPatch,
                                                                compose_cfg) -> None:
    GradientWatcher.seen.clear()
    run = _run_end(monkeypatch, compose_cfg, ["trainer.max_epochs=2", *WATCHER])
    assert GradientWatcher.seen == {"backward": 10, "steps": 10} and run["steps"] == 10  # 5 batches an epoch


def test_accumulated_gradients_step_the_optimizer_every_n_batches(monkeypatch: pytest.MonkeyPatch,
                                                                  compose_cfg) -> None:
    GradientWatcher.seen.clear()
    accumulated = _run_end(monkeypatch, compose_cfg, ["trainer.max_epochs=2", "+trainer.accumulate_grad_batches=2",
                                                      *WATCHER])
    assert GradientWatcher.seen == {"backward": 10, "steps": 6}  # batches 2, 4 and the epoch's last
    assert accumulated["steps"] == 6
    plain = _run_end(monkeypatch, compose_cfg, ["trainer.max_epochs=2"])
    assert not torch.allclose(accumulated["weights"], plain["weights"])


def test_max_steps_and_limit_train_batches_count_batches(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    assert _run_end(monkeypatch, compose_cfg, ["trainer.max_steps=3"])["steps"] == 3  # an epoch here is 5 steps
    run = _run_end(monkeypatch, compose_cfg, ["trainer.max_epochs=3", "+trainer.limit_train_batches=2"])
    assert run["steps"] == 3 * 2


def _train_bar_per_epoch(monkeypatch: pytest.MonkeyPatch, compose_cfg, overrides: list[str]) -> list[tuple]:
    """Train; return (completed, total) of the progress bar's training task as each epoch ends."""
    from experiments.callbacks import progress

    seen: list[tuple] = []
    original = progress.ProgressBar.on_train_epoch_end

    def record(self, trainer, pl_module):  # type: ignore[no-untyped-def]
        task = next(task for task in self.progress.tasks if task.id == self.train_progress_bar_id)
        seen.append((task.completed, task.total))
        original(self, trainer, pl_module)

    monkeypatch.setattr(progress.ProgressBar, "on_train_epoch_end", record)
    bar_on = ["+callbacks.progress_bar._target_=experiments.callbacks.progress.ProgressBar",
              "trainer.enable_progress_bar=true"]  # the test config turns the bar off
    _train(compose_cfg, [*bar_on, *overrides])
    monkeypatch.setattr(progress.ProgressBar, "on_train_epoch_end", original)
    return seen


def test_progress_bar_counts_the_epochs_batches(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    assert _train_bar_per_epoch(monkeypatch, compose_cfg, ["trainer.max_epochs=2"]) == [(5, 5), (5, 5)]


def _lr_per_epoch(monkeypatch: pytest.MonkeyPatch, compose_cfg, overrides: list[str]) -> list[float]:
    """Train; return the learning rate as each epoch's `on_train_epoch_end` of the module saw it."""
    from experiments.models import module as module_file

    rates: list[float] = []
    original = module_file.ExperimentModule.on_train_epoch_end

    def record(self):  # type: ignore[no-untyped-def]
        original(self)
        rates.append(self.optimizers().optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(module_file.ExperimentModule, "on_train_epoch_end", record)
    _train(compose_cfg, overrides)
    return rates


def test_step_scheduler_lowers_the_learning_rate_each_epoch(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    rates = _lr_per_epoch(monkeypatch, compose_cfg, ["trainer.max_epochs=3", "scheduler=step", "scheduler.step_size=1",
                                                     "scheduler.gamma=0.5", "optimizer.lr=0.1"])
    assert rates == pytest.approx([0.05, 0.025, 0.0125])


def test_plateau_scheduler_reads_the_monitored_metric(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    """Lightning steps it after each validation with `monitor`: in max mode a falling val/loss is no progress."""
    rates = _lr_per_epoch(monkeypatch, compose_cfg, ["trainer.max_epochs=4", "scheduler=plateau", "scheduler.patience=0",
                                                     "scheduler.factor=0.5", "optimizer.lr=0.01", "monitor_mode=max"])
    # Recorded before Lightning steps the plateau scheduler for that epoch: the first epoch sets the best value.
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.0025])


def test_gradient_clipping_from_the_trainer_config_changes_training(monkeypatch: pytest.MonkeyPatch,
                                                                    compose_cfg) -> None:
    plain = _final_weights(monkeypatch, compose_cfg, ["trainer.max_epochs=2", "optimizer=sgd", "optimizer.lr=0.5"])
    clipped = _final_weights(monkeypatch, compose_cfg, ["trainer.max_epochs=2", "optimizer=sgd", "optimizer.lr=0.5",
                                                        "trainer.gradient_clip_val=0.001"])
    assert not torch.allclose(plain, clipped)


def test_loss_threshold_stops_training_when_reached(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    end = _run_end(monkeypatch, compose_cfg, ["trainer.max_epochs=60", "optimizer.lr=0.01",
                                               "callbacks.loss_threshold.threshold=0.6"])
    assert end["metrics"]["train/loss"] <= 0.6
    assert end["epochs"] < 59  # stopped at the threshold, not at max_epochs
    unstopped = _run_end(monkeypatch, compose_cfg, ["trainer.max_epochs=60", "optimizer.lr=0.01"])
    assert unstopped["epochs"] == 60


def test_training_collects_garbage_again_after_the_paused_start_up(compose_cfg) -> None:
    """`experiments train` loads with cycle collection paused; a long training must not run without it."""
    import gc

    from experiments.speedups import pause_gc_for_startup

    try:
        pause_gc_for_startup()
        assert not gc.isenabled()
        _train(compose_cfg, ["trainer.max_epochs=1"])
        assert gc.isenabled() and gc.get_freeze_count() > 0  # start-up's objects are frozen, not rescanned
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_stock_learning_rate_monitor_logs_the_schedule(compose_cfg, outputs) -> None:
    from mlflow.tracking import MlflowClient

    from tests.conftest import store_uri

    _train(compose_cfg, ["logger=mlflow", "trainer.max_epochs=3", "scheduler=step", "scheduler.step_size=1",
                         "scheduler.gamma=0.5", "optimizer.lr=0.1",
                         "+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor",
                         "+callbacks.lr_monitor.logging_interval=epoch"])
    client = MlflowClient(store_uri(outputs))
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    history = sorted(client.get_metric_history(run.info.run_id, "lr-Adam"), key=lambda m: m.step)
    assert [m.value for m in history] == pytest.approx([0.1, 0.05, 0.025])  # as each epoch starts


def test_stochastic_weight_averaging_ends_with_and_tests_the_averaged_weights(monkeypatch: pytest.MonkeyPatch,
                                                                             compose_cfg) -> None:
    """`experiment=overfitting/swa`: Lightning's stock callback averages the weights of the epochs from
    `swa_epoch_start` on; the run ends with that average and scores the test split with it, not with the
    best checkpoint (one epoch's weights)."""
    from experiments.models import module as module_file

    epoch_weights: list[torch.Tensor] = []
    tested: list[torch.Tensor] = []
    original_epoch_end = module_file.ExperimentModule.on_train_epoch_end

    def record_epoch(self):  # type: ignore[no-untyped-def]
        original_epoch_end(self)
        epoch_weights.append(self.net[0].weight.detach().clone())

    monkeypatch.setattr(module_file.ExperimentModule, "on_train_epoch_end", record_epoch)
    monkeypatch.setattr(module_file.ExperimentModule, "on_test_start",
                        lambda self: tested.append(self.net[0].weight.detach().clone()), raising=False)
    validated: list[torch.Tensor] = []
    monkeypatch.setattr(module_file.ExperimentModule, "on_validation_start",
                        lambda self: validated.append(self.net[0].weight.detach().clone()), raising=False)
    run = _run_end(monkeypatch, compose_cfg, ["experiment=overfitting/swa", "trainer.max_epochs=8",
                                              "callbacks.swa.swa_epoch_start=0.5", "test=true"])
    assert len(epoch_weights) == 8
    # Lightning averages the weights that epochs 4..8 (counted from 1; int(0.5 * 8) is the first) start
    # with: those the 3rd..7th epochs ended with.
    averaged = torch.stack(epoch_weights[2:7]).mean(dim=0)
    assert torch.allclose(run["weights"], averaged, atol=1e-6)
    assert not torch.allclose(run["weights"], epoch_weights[-1])
    assert len(tested) == 1 and torch.equal(tested[0], run["weights"])
    # The run's final val/* belong to the averaged weights too: validated once more after the last epoch.
    assert len(validated) == 8 + 1 and torch.equal(validated[-1], run["weights"])
    assert "test/loss" in run["metrics"]


def two_layer_net(input_dim: int, output_dim: int, width: int = 4, bias_init: float | None = None) -> torch.nn.Module:
    """A user's own network builder, named from the command line by `model._target_`."""
    net = torch.nn.Sequential(torch.nn.Linear(input_dim, width), torch.nn.Tanh(), torch.nn.Linear(width, output_dim))
    if bias_init is not None:
        for layer in (net[0], net[2]):
            torch.nn.init.constant_(layer.bias, bias_init)
    return net


def test_a_users_own_network_by_target_trains(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    from experiments.models import module as module_file

    seen: dict = {}
    original = module_file.ExperimentModule.on_train_end

    def remember(self):  # type: ignore[no-untyped-def]
        seen["net"] = self.net
        return original(self)

    monkeypatch.setattr(module_file.ExperimentModule, "on_train_end", remember, raising=False)
    metrics = _train(compose_cfg, ["trainer.max_epochs=2", f"model._target_={__name__}.two_layer_net",
                                   "~model.hidden_dims", "~model.activation", "~model.dropout", "~model.norm",
                                   "~model.init", "~model.init_std", "+model.width=6"])
    layers = [m for m in seen["net"] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(8, 6), (6, 1)]  # the seed data's 8 columns
    assert "val/loss" in metrics
