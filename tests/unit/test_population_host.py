"""When a command starts a population host: only a population sweep named on the command line, with the
speed-up on, on more than one core (the host itself is exercised end to end in e2e/test_population_sweeps.py)."""

from __future__ import annotations

import pytest

from experiments import population_host


@pytest.mark.parametrize("args", [
    ["optimizer.lr=0.01", "hydra/launcher=population"],  # not a sweep
    ["-m", "optimizer.lr=0.01,0.1"],  # a sweep, but not of populations
    ["-m", "hydra/launcher=population", "--cfg", "job"],  # Hydra prints the config: nothing trains
    ["--multirun", "hydra/launcher=population", "--help"],
])
def test_no_host_for_a_command_that_trains_no_population(args: list[str]) -> None:
    population_host.start_if_asked(args)
    assert population_host.current() is None


def test_no_host_with_the_speed_up_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "population_host")
    population_host.start_if_asked(["-m", "hydra/launcher=population", "seed=1,2"])
    assert population_host.current() is None


def test_no_host_on_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(population_host.os, "cpu_count", lambda: 1)
    population_host.start_if_asked(["-m", "hydra/launcher=population", "seed=1,2"])
    assert population_host.current() is None
