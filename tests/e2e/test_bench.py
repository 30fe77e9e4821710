"""`experiments bench`: a fair comparison (same model, data, order, init) and a complete JSON report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from experiments.bench import WORKLOADS, _measure
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def test_framework_and_loop_train_the_same_model_on_the_same_data() -> None:
    workload = {**WORKLOADS["tiny"], "epochs": 3, "seed": 3, "threads": 1}
    framework = _measure("framework", workload)
    loop = _measure("loop", workload)
    assert framework.steps == loop.steps == 3 * 22
    assert framework.fused_optimizer == loop.fused_optimizer == 1.0  # the same Adam kernel on both paths
    # Same init, same batches in the same order, same optimizer: the last epoch's mean training loss
    # agrees to float rounding. A different seed gives a visibly different loss, so this can fail.
    assert framework.final_loss == pytest.approx(loop.final_loss, rel=1e-5)
    other = _measure("loop", {**workload, "seed": 4})
    assert other.final_loss != pytest.approx(loop.final_loss, rel=1e-5)


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_cli(["bench", "--quick", "--out", str(out)], cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["workloads"]) == {"tiny", "medium", "large"}
    for name, figures in report["workloads"].items():
        for path in ("framework", "loop"):
            for key in ("steps_per_s", "samples_per_s", "steps_per_cpu_s", "peak_rss_mb", "final_loss", "threads"):
                assert figures[path][key] > 0, (name, path, key)
        assert figures["ratio"] > 0 and figures["cpu_ratio"] > 0 and figures["target"] > 0
        assert len(figures["ratio_each"]) == report["repeats"] and min(figures["ratio_each"]) > 0
        assert min(figures["ratio_each"]) <= figures["ratio_paired_median"] <= max(figures["ratio_each"])
    # Whole sweeps, one by one and as populations, in the same run; and the hand-written reference.
    assert set(report["sweeps"]) == {"grid16"}
    for name, sweep in report["sweeps"].items():
        assert sweep["sequential_s"] > 0 and sweep["population_s"] > 0 and sweep["target"] > 0, name
        assert sweep["speedup"] == pytest.approx(sweep["sequential_s"] / sweep["population_s"])
        # The sweep's CPU time counts its worker processes too: more than nothing, at most its cores' worth.
        for kind, wall in (("sequential", sweep["sequential_s"]), ("population", sweep["population_s"])):
            assert 0 < sweep["cpu_s"][kind] <= wall * (os.cpu_count() or 1) * 1.05, (name, kind)
        phases = sweep["population_phases"]
        assert phases["training_s"] > 0 and phases["member_open_s"] > 0 and phases["member_close_s"] > 0, name
        # Every part of a member's tracking was timed (every member logs its model by default).
        parts = phases["member_parts_s"]
        assert set(parts) == {"run", "record", "record_write", "plot", "model", "metrics", "status"}, name
        # A 4-member population writes its records itself (the record writer starts from 8 members).
        assert parts["record_write"] == 0 and min(v for k, v in parts.items() if k != "record_write") > 0, parts
    assert report["sweep_reference"]["trials"] == 4 and report["sweep_reference"]["seconds"] > 0
    # Piped (as into a CI log), the tables are not cut at 80 columns: every header stays whole.
    assert "population s" in result.stdout and "per member close s" in result.stdout
    assert "grid16, one member's tracking (median s): run " in result.stdout
    assert "grid16, CPU time of the process tree (median s): sequential " in result.stdout
    fixed = report["fixed_costs"]
    assert fixed["help_imports_torch"] is False and fixed["config_error_imports_torch"] is False
    assert fixed["help_s"] > 0 and fixed["config_error_s"] > 0
    for key in ("default_train", "default_train_new_store"):  # a run in an existing store, and the first one
        phases = fixed[key]
        assert phases["startup_s"] > 0 and phases["training_s"] > 0 and phases["wrapup_s"] > 0
        assert phases["total_s"] == pytest.approx(phases["startup_s"] + phases["training_s"] + phases["wrapup_s"])
        assert sum(phases["wrapup_parts_s"].values()) == pytest.approx(phases["wrapup_s"])
        assert min(phases["wrapup_parts_s"].values()) >= 0
