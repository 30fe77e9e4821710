"""Sweep bookkeeping that needs no training: point identity, best child, summary counts, bad settings."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from experiments.tracking.sweep_description import (
    SweepConfigError,
    objective_mode,
    search_space,
    sweep_identity,
)
from experiments.tracking.sweep_points import point_of, swept_part
from experiments.tracking.sweep_summary import ChildRun, best_child, summarize


def test_a_point_is_the_same_however_its_values_are_spelled_or_ordered() -> None:
    first = point_of(["optimizer.lr=1e-2", "model.activation=tanh", "model.hidden_dims=[10,8]"])
    again = point_of(["model.activation=tanh", "model.hidden_dims=[10, 8]", "optimizer.lr=0.01"])
    assert first == again
    assert point_of(["optimizer.lr=1e-3"]) != point_of(["optimizer.lr=1e-2"])


def test_launcher_trial_link_and_sweep_switches_do_not_change_a_point() -> None:
    plain = point_of(["seed=3"])
    assert point_of(["seed=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "++optuna.trial_number=7",
                     "skip_finished=true", "sweep_name=ext", "sweep=seeds"]) == plain


def test_swept_part_names_the_swept_values_only() -> None:
    point = point_of(["model.activation=tanh", "optimizer.lr=0.01", "trainer.max_epochs=2"])
    keys = ["optimizer.lr", "model.activation"]
    assert swept_part(point, keys) == "model.activation=tanh optimizer.lr=0.01"


def test_swept_part_keeps_a_list_value_whole() -> None:
    point = point_of(["model.hidden_dims=[64, 64]", "optimizer.lr=0.01"])
    assert swept_part(point, ["model.hidden_dims", "optimizer.lr"]) == "model.hidden_dims=[64,64] optimizer.lr=0.01"


def _child(run_id: str, metric: float | None, status: str = "FINISHED") -> ChildRun:
    return ChildRun(run_id=run_id, run_name=run_id, status=status, point="", params="", metric=metric)


def test_best_child_follows_the_direction_and_ignores_unfinished_runs() -> None:
    children = [_child("a", 0.5), _child("b", 0.2), _child("c", 0.9), _child("d", 0.1, status="FAILED"),
                _child("e", None)]
    assert best_child(children, "min").run_id == "b"  # type: ignore[union-attr]
    assert best_child(children, "max").run_id == "c"  # type: ignore[union-attr]
    assert best_child([_child("x", 0.1, status="RUNNING")], "min") is None


def test_summary_counts_failed_pruned_and_reused_jobs() -> None:
    def record(num: int, status: str, error: str | None = None, reused: str | None = None) -> dict:
        return {"num": num, "overrides": [f"seed={num}"], "status": status, "error": error,
                "reused_run_id": reused}

    records = [record(0, "COMPLETED"), record(1, "COMPLETED", reused="r1"),
               record(2, "FAILED", "UserError: bad"), record(3, "PRUNED", "TrialPruned: x")]
    summary = summarize([_child("r0", 0.3), _child("r1", 0.2)], records, "val/loss_best", "min")
    assert (summary.jobs, summary.failed_jobs, summary.skipped_jobs, summary.pruned_jobs) == (4, 1, 1, 1)
    assert summary.failures == ["job 2 (seed=2): UserError: bad"]
    assert summary.best is not None and summary.best.run_id == "r1"


def _sweep_config(**top: object) -> OmegaConf:
    return OmegaConf.create({
        "monitor_mode": "min",
        "sweep_name": None,
        "skip_finished": False,
        **top,
        "hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                              "params": {"seed": "range(0,3)"}},
                  "overrides": {"task": ["model.activation=relu,tanh", "trainer.max_epochs=2"]},
                  "job": {"name": "train"}, "runtime": {"cwd": "/tmp"}},
    })


def test_skip_finished_without_a_sweep_name_is_refused_with_the_fix() -> None:
    with pytest.raises(SweepConfigError, match="skip_finished=true needs sweep_name=<name>"):
        sweep_identity(_sweep_config(skip_finished=True))
    assert sweep_identity(_sweep_config(skip_finished=True, sweep_name="ext")) == {"sweep.name": "ext"}
    assert sweep_identity(_sweep_config()) == {}


def test_search_space_joins_preset_params_and_command_line_sweeps() -> None:
    config = _sweep_config()
    assert search_space(config) == {"seed": "range(0,3)", "model.activation": "relu,tanh"}
    assert objective_mode(config) == "min"
    assert objective_mode(_sweep_config(monitor_mode="max")) == "max"
