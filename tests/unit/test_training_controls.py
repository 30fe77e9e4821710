"""Training controls wired through the module's own optimization step: schedulers, gradient clipping,
the seed's loss-threshold stop, and grouped steps giving the same result as one step per item."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

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


def test_grouped_steps_train_exactly_like_one_step_per_item(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    grouped = _final_weights(monkeypatch, compose_cfg, ["trainer.max_epochs=3", "steps_per_item=auto"])
    single = _final_weights(monkeypatch, compose_cfg, ["trainer.max_epochs=3", "steps_per_item=1"])
    assert torch.equal(grouped, single)


def test_max_steps_ends_training_mid_item_at_exactly_that_step(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    """`trainer.max_steps=3` is three optimizer steps, although one grouped item carries a whole epoch's."""
    grouped = _run_end(monkeypatch, compose_cfg, ["trainer.max_steps=3", "steps_per_item=auto"])
    single = _run_end(monkeypatch, compose_cfg, ["trainer.max_steps=3", "steps_per_item=1"])
    assert grouped["steps"] == single["steps"] == 3  # an epoch here is 5 steps
    assert torch.equal(grouped["weights"], single["weights"])


def test_limit_train_batches_counts_batches_not_grouped_items(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    run = _run_end(monkeypatch, compose_cfg, ["trainer.max_epochs=3", "+trainer.limit_train_batches=2",
                                              "steps_per_item=auto"])
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


def test_progress_bar_counts_optimizer_steps_when_an_item_carries_several(monkeypatch: pytest.MonkeyPatch,
                                                                          compose_cfg) -> None:
    # One grouped item carries the whole 5-step epoch here; the bar still reads 5/5, as with one step per item.
    grouped = _train_bar_per_epoch(monkeypatch, compose_cfg, ["trainer.max_epochs=2", "steps_per_item=auto"])
    single = _train_bar_per_epoch(monkeypatch, compose_cfg, ["trainer.max_epochs=2", "steps_per_item=1"])
    assert grouped == single == [(5, 5), (5, 5)]
    # An epoch cut short by `trainer.max_steps` shows the steps it will run.
    assert _train_bar_per_epoch(monkeypatch, compose_cfg, ["trainer.max_steps=3", "steps_per_item=auto"]) == [(3, 3)]


def test_step_scheduler_lowers_the_learning_rate_each_epoch(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    from experiments.models import module as module_file

    rates: list[float] = []
    original = module_file.ExperimentModule.on_train_epoch_end

    def record(self):  # type: ignore[no-untyped-def]
        original(self)
        rates.append(self.optimizers().optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(module_file.ExperimentModule, "on_train_epoch_end", record)
    _train(compose_cfg, ["trainer.max_epochs=3", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5",
                         "optimizer.lr=0.1"])
    assert rates == pytest.approx([0.05, 0.025, 0.0125])


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

    from experiments.runtime import pause_gc_for_startup

    try:
        pause_gc_for_startup()
        assert not gc.isenabled()
        _train(compose_cfg, ["trainer.max_epochs=1"])
        assert gc.isenabled() and gc.get_freeze_count() > 0  # start-up's objects are frozen, not rescanned
    finally:
        gc.unfreeze()
        gc.enable()
