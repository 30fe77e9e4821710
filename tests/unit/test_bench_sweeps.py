"""How `experiments bench` sums up the population runs of a sweep repeated several times."""

from __future__ import annotations

from experiments.bench_sweeps import median_phases


def test_each_figure_of_repeated_runs_is_its_median_nested_parts_included() -> None:
    runs = [
        {"training_s": 1.0, "member_open_s": 0.10, "member_parts_s": {"run": 0.01, "model": 0.2}},
        {"training_s": 3.0, "member_open_s": 0.30, "member_parts_s": {"run": 0.03, "model": 0.1}},
        {"training_s": 2.0, "member_open_s": 0.20, "member_parts_s": {"run": 0.02, "model": 0.3}},
    ]
    assert median_phases(runs) == {"training_s": 2.0, "member_open_s": 0.20,
                                   "member_parts_s": {"run": 0.02, "model": 0.2}}
    assert median_phases([]) == {}
