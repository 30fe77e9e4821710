"""The report's statistics: Student-t intervals over seeds and differences paired by seed."""

from __future__ import annotations

import math

import pytest

from experiments.report.stats import estimate, paired_difference


def test_three_seeds_give_mean_sample_std_and_a_t_interval() -> None:
    e = estimate([1.0, 2.0, 3.0])
    assert (e.n, e.mean, e.std) == (3, 2.0, 1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 dof) · s / √n
    assert e.ci_low == pytest.approx(2.0 - half) and e.ci_high == pytest.approx(2.0 + half)


def test_one_seed_has_a_mean_but_no_spread_or_interval() -> None:
    e = estimate([0.7])
    assert e.mean == 0.7 and math.isnan(e.std) and math.isnan(e.ci_low) and not e.excludes_zero()


def test_pairing_by_seed_removes_the_shared_seed_effect() -> None:
    baseline = {"1": 1.0, "2": 5.0, "3": 9.0}  # seeds differ a lot...
    fix = {"1": 0.5, "2": 4.6, "3": 8.4}  # ...and the fix is 0.4–0.6 lower on every one of them
    d = paired_difference(fix, baseline)
    assert d.n == 3 and d.mean == pytest.approx(-0.5)
    assert d.excludes_zero() and d.ci_high < 0
    # Unpaired, the seed spread would swamp the effect: the intervals of the two groups overlap.
    assert estimate(list(fix.values())).ci_high > estimate(list(baseline.values())).mean


def test_only_seeds_present_on_both_sides_are_paired() -> None:
    d = paired_difference({"1": 2.0, "2": 3.0, "7": 100.0}, {"1": 1.0, "2": 1.0, "3": 0.0})
    assert d.n == 2 and d.mean == pytest.approx(1.5)
