"""A population's epoch scores: each member's values equal those its run alone computes."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.models.epoch_metrics import EpochOutputs
from experiments.models.population_metrics import PopulationOutputs


def _alone(task: str, output: torch.Tensor, target: torch.Tensor,
           target_scale: tuple[float, float] | None = None) -> dict[str, float]:
    collected = EpochOutputs(task, 3, target_scale)
    collected.update(output, target)
    return {name: float(value) for name, value in collected.compute().items()}


def _together(task: str, outputs: torch.Tensor, target: torch.Tensor, members: list[int],
              target_scale: tuple[float, float] | None = None) -> list[dict[str, float]]:
    collected = PopulationOutputs(task, 3, target_scale)
    for chunk_outputs, chunk_targets in zip(outputs.split(16, dim=1), target.split(16)):
        collected.update(chunk_outputs, chunk_targets)
    return collected.compute(members)


def _binary_population(generator: torch.Generator, members: int = 6, rows: int = 50) -> torch.Tensor:
    outputs = torch.randn(members, rows, 1, generator=generator) * 2
    outputs[1] = outputs[1].round()  # tied scores: AUROC counts a tied positive–negative pair half
    outputs[2] = 0.0  # every score tied
    outputs[3] = torch.where(outputs[3] > 0, 40.0, -40.0)  # saturated probabilities: ties after the sigmoid
    return outputs


def test_binary_members_score_as_alone_including_ties_and_a_non_finite_member() -> None:
    generator = torch.Generator().manual_seed(5)
    outputs = _binary_population(generator)
    outputs[4, 7] = math.nan  # a diverged member: scored by the run alone's function, NaN and all
    target = torch.randint(0, 2, (50,), generator=generator)
    members = [5, 0, 1, 2, 3, 4]  # any subset, in any order (the active members)
    together = _together("binary", outputs, target, members)
    for m, scores in zip(members, together):
        alone = _alone("binary", outputs[m], target)
        assert scores.keys() == alone.keys()
        for name, value in alone.items():
            assert scores[name] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), (m, name)
    assert together[members.index(2)]["auroc"] == pytest.approx(0.5)
    assert math.isnan(together[members.index(4)]["loss"])


def test_binary_split_of_one_class_scores_as_alone() -> None:
    generator = torch.Generator().manual_seed(6)
    outputs = _binary_population(generator, members=4, rows=20)
    target = torch.ones(20, dtype=torch.long)
    for m, scores in enumerate(_together("binary", outputs, target, [0, 1, 2, 3])):
        assert scores == pytest.approx(_alone("binary", outputs[m], target), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_score_each_member_as_alone(task: str) -> None:
    generator = torch.Generator().manual_seed(7)
    width = 3 if task == "multiclass" else 1
    outputs = torch.randn(4, 40, width, generator=generator)
    scale = (2.0, 3.0) if task == "regression" else None
    target = outputs[0].squeeze(-1) + torch.randn(40, generator=generator) if task == "regression" \
        else torch.randint(0, 3, (40,), generator=generator)
    for m, scores in zip([3, 1], _together(task, outputs, target, [3, 1], scale)):
        assert scores == pytest.approx(_alone(task, outputs[m], target, scale), rel=1e-6, abs=1e-7)
