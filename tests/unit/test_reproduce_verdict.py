"""The reproduce verdict and the command printed after an interruption (pure functions, no training)."""

from __future__ import annotations

import math

from experiments.paths import project_root
from experiments.reproduce import compare_metrics
from experiments.resume import resume_command
from experiments.tracking.store import default_tracking_uri


def test_verdict_is_identical_only_when_every_metric_is_bit_equal() -> None:
    same = compare_metrics({"val/loss": 0.5, "test/acc": 0.9, "epoch": 3.0}, {"val/loss": 0.5, "test/acc": 0.9}, 1e-6)
    assert same.verdict == "identical"
    assert [row[0] for row in same.rows] == ["test/acc", "val/loss"]  # bookkeeping keys are not compared


def test_verdict_names_the_largest_difference() -> None:
    close = compare_metrics({"val/loss": 0.5, "test/acc": 0.9}, {"val/loss": 0.5 + 1e-8, "test/acc": 0.9}, 1e-6)
    assert close.verdict == "within tolerance"
    far = compare_metrics({"val/loss": 0.5, "test/acc": 0.9}, {"val/loss": 0.51, "test/acc": 0.8}, 1e-6)
    assert far.verdict == "differs"
    name, diff = far.largest
    assert name == "test/acc" and math.isclose(diff, 0.1)


def test_a_missing_metric_or_a_new_nan_differs() -> None:
    assert compare_metrics({"val/loss": 0.5, "test/acc": 0.9}, {"val/loss": 0.5}, 1.0).verdict == "differs"
    assert compare_metrics({"val/loss": 0.5}, {"val/loss": math.nan}, 1.0).verdict == "differs"
    assert compare_metrics({"val/loss": math.nan}, {"val/loss": math.nan}, 0.0).verdict == "identical"
    assert compare_metrics({}, {}, 1.0).verdict == "differs"


def test_resume_command_names_the_store_only_when_it_is_not_the_default(tmp_path) -> None:
    default_outputs = str(project_root() / "outputs")
    assert resume_command("abc", default_tracking_uri(default_outputs), default_outputs) == "experiments train resume=abc"
    assert resume_command("abc", default_tracking_uri(tmp_path), str(tmp_path)) == (
        f"experiments train resume=abc paths.output_dir={tmp_path}"
    )
    assert resume_command("abc", "http://tracking:5000", str(tmp_path)) == (
        "experiments train resume=abc logger.tracking_uri=http://tracking:5000"
    )
