"""The overfitting study end to end: `experiments study` (a real multirun into a temp sqlite store),
the report `experiments compare` builds from MLflow, and the MLflow UI in headless Chromium."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import free_port, run_cli, store_uri, wait_for_http

pytestmark = pytest.mark.e2e

FIXES = ["baseline", "l2", "dropout", "early_stopping"]
SEEDS = ["1", "2"]
EPOCHS = 25


@dataclass
class Study:
    root: Path
    outputs: Path
    report: Path
    stdout: str
    client: MlflowClient
    experiment_id: str
    runs: list
    parent_id: str

    def runs_of(self, fix: str) -> list:
        return sorted((r for r in self.runs if r.data.tags["fix"] == fix), key=lambda r: r.data.tags["seed"])

    def gap_history(self, run) -> list[float]:
        history = self.client.get_metric_history(run.info.run_id, "gap/loss")
        return [m.value for m in sorted(history, key=lambda m: m.step)]

    def final(self, run, key: str) -> float:
        """`key` for the model a run ends with: the restored best epoch under early stopping, else the last."""
        if run.data.metrics.get("early_stopping/restored") != 1.0:
            return run.data.metrics[key]
        epoch = run.data.metrics["early_stopping/best_epoch"]
        return next(m.value for m in self.client.get_metric_history(run.info.run_id, key) if m.step == epoch)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("study")
    outputs, report = root / "outputs", root / "report"
    result = run_cli(["study", "--seeds", str(len(SEEDS)), "--fixes", ",".join(FIXES), "--output", str(report),
                      f"paths.output_dir={outputs}", f"trainer.max_epochs={EPOCHS}"], cwd=root, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(store_uri(outputs))
    experiment = client.get_experiment_by_name("overfitting")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.study != ''")  # children only
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    assert len(parents) == 1 and None not in parents, parents
    return Study(root, outputs, report, result.stdout, client, experiment.experiment_id, runs, parents.pop())


def test_one_finished_child_run_per_fix_and_seed_tagged_with_both(study: Study) -> None:
    assert sorted((r.data.tags["fix"], r.data.tags["seed"]) for r in study.runs) == sorted(
        (f, s) for f in FIXES for s in SEEDS)
    assert all(r.info.status == "FINISHED" for r in study.runs)
    assert {r.info.run_name for r in study.runs} == {f"{f}-seed{s}" for f in FIXES for s in SEEDS}
    assert {r.data.params["regularization.l2"] for r in study.runs_of("l2")} == {"0.003"}
    assert {r.data.params["model.dropout"] for r in study.runs_of("dropout")} == {"0.5"}
    parent = study.client.get_run(study.parent_id)
    assert parent.info.status == "FINISHED" and "fix" not in parent.data.tags


def test_every_run_has_its_learning_curve_png(study: Study) -> None:
    for run in study.runs:
        assert [a.path for a in study.client.list_artifacts(run.info.run_id, "plots")] == ["plots/learning_curve.png"]
    png = study.client.download_artifacts(study.runs[0].info.run_id, "plots/learning_curve.png", str(study.root))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baseline_overfits_more_and_more(study: Study) -> None:
    for run in study.runs_of("baseline"):
        gap = study.gap_history(run)
        assert len(gap) == EPOCHS
        assert gap[-1] > gap[EPOCHS // 2] > gap[2] + 0.2, gap
        assert run.data.metrics["train/acc"] > run.data.metrics["val/acc"] + 0.15


@pytest.mark.parametrize("fix", ["l2", "dropout", "early_stopping"])
def test_fix_ends_with_a_smaller_gap_than_the_baseline(study: Study, fix: str) -> None:
    baseline = {r.data.tags["seed"]: study.final(r, "gap/loss") for r in study.runs_of("baseline")}
    fixed = {r.data.tags["seed"]: study.final(r, "gap/loss") for r in study.runs_of(fix)}
    for seed in SEEDS:
        assert fixed[seed] < baseline[seed], (fix, seed, fixed, baseline)
        # ...and not only at the model's end: at the last epoch trained, too.
        last = next(r for r in study.runs_of(fix) if r.data.tags["seed"] == seed).data.metrics["gap/loss"]
        assert last < baseline[seed]


def test_early_stopping_stops_early_and_restores_the_best_epoch(study: Study) -> None:
    for run in study.runs_of("early_stopping"):
        m = run.data.metrics
        assert len(study.gap_history(run)) < EPOCHS
        assert m["early_stopping/restored"] == 1.0
        assert m["early_stopping/best_epoch"] == m["val/loss_best_epoch"]
        assert m["early_stopping/stopped_epoch"] == m["val/loss_best_epoch"] + 5  # the preset's patience
        # The model the run ends with is the best epoch's: its val loss is the best one.
        assert study.final(run, "val/loss") == pytest.approx(m["val/loss_best"], rel=1e-6)
        assert m["val/loss"] > m["val/loss_best"]


def test_the_charts_hold_per_epoch_curves_and_one_off_values_sit_at_step_zero(study: Study) -> None:
    """The UI draws a metric with several steps as a curve: only per-epoch series may have them."""
    for run in study.runs:
        epochs = len(study.gap_history(run))
        for key in run.data.metrics:
            steps = sorted(m.step for m in study.client.get_metric_history(run.info.run_id, key))
            assert steps in ([0], list(range(epochs))), (run.info.run_name, key, steps)
            if key.startswith(("test/", "early_stopping/")):
                assert steps == [0], (run.info.run_name, key, steps)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_report_holds_the_numbers_mlflow_has(study: Study) -> None:
    assert {p.name for p in study.report.iterdir()} >= {"report.md", "report.csv", "runs.csv", "val_curves.png",
                                                         "gap_bars.png"}
    rows = {row["fix"]: row for row in _read_csv(study.report / "report.csv")}
    assert list(rows) == ["baseline", *sorted(set(FIXES) - {"baseline"}, key=lambda f: float(rows[f]["final_gap_loss_mean"]))]
    markdown = (study.report / "report.md").read_text()
    baseline_gaps = {r.data.tags["seed"]: study.final(r, "gap/loss") for r in study.runs_of("baseline")}
    for fix in FIXES:
        runs = study.runs_of(fix)
        gaps = [study.final(r, "gap/loss") for r in runs]
        best = [r.data.metrics["val/loss_best"] for r in runs]
        row = rows[fix]
        assert row["n_seeds"] == "2" and row["seeds"] == "1 2"
        assert float(row["final_gap_loss_mean"]) == pytest.approx(mean(gaps), rel=1e-9)
        assert float(row["best_val_loss_mean"]) == pytest.approx(mean(best), rel=1e-9)
        assert float(row["best_epoch_mean"]) == pytest.approx(mean(r.data.metrics["val/loss_best_epoch"] for r in runs))
        assert float(row["final_val_acc_mean"]) == pytest.approx(mean(study.final(r, "val/acc") for r in runs))
        spread = abs(gaps[0] - gaps[1]) / math.sqrt(2)  # the sample std of two values
        assert float(row["final_gap_loss_std"]) == pytest.approx(spread, rel=1e-6)
        half = 12.706204736174705 * spread / math.sqrt(2)  # t(0.975, 1 dof) · s / √n
        assert float(row["final_gap_loss_ci_high"]) == pytest.approx(mean(gaps) + half, rel=1e-6)
        assert f"{mean(gaps):.3f}".replace("-", "−") in markdown
        if fix != "baseline":
            diffs = [study.final(r, "gap/loss") - baseline_gaps[r.data.tags["seed"]] for r in runs]
            assert float(row["final_gap_loss_vs_baseline_mean"]) == pytest.approx(mean(diffs), rel=1e-9)
            assert row["final_gap_loss_vs_baseline_n_pairs"] == "2"
    per_run = _read_csv(study.report / "runs.csv")
    assert {r["run_id"] for r in per_run} == {r.info.run_id for r in study.runs}
    for png in ("val_curves.png", "gap_bars.png"):
        data = (study.report / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 500_000
    for fix in FIXES:
        assert fix in study.stdout  # the printed Rich table


def test_report_is_attached_to_the_sweep_parent_run(study: Study) -> None:
    logged = {a.path for a in study.client.list_artifacts(study.parent_id, "report")}
    assert logged == {f"report/{n}" for n in ("report.md", "report.csv", "runs.csv", "val_curves.png", "gap_bars.png")}


def test_compare_by_parent_run_id_rebuilds_the_same_table(study: Study, tmp_path: Path) -> None:
    result = run_cli(["compare", "--parent", study.parent_id, "--tracking-uri", store_uri(study.outputs),
                      "--output", str(tmp_path / "again"), "--no-log"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _read_csv(tmp_path / "again" / "report.csv") == _read_csv(study.report / "report.csv")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--experiment", "overfiting"], "There is no MLflow experiment named 'overfiting'"),
        (["--parent", "0123456789abcdef"], "MLflow run '0123456789abcdef' is not in the store"),
        (["--experiment", "overfitting", "--filter", "tags.fix = 'nope'"], "No finished runs match"),
        (["--experiment", "overfitting", "--filter", "tags.fix =="], "MLflow rejected the filter"),
        ([], "Say which runs to compare"),
    ],
)
def test_compare_bad_input_is_one_clear_line(study: Study, tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_cli(["compare", "--tracking-uri", store_uri(study.outputs), "--output", str(tmp_path), *args],
                     cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compare_on_a_missing_store_says_so(tmp_path: Path) -> None:
    result = run_cli(["compare", "--experiment", "overfitting", "--tracking-uri", store_uri(tmp_path / "nowhere")],
                     cwd=tmp_path)
    assert result.returncode == 2 and "There is no MLflow store at" in result.stderr
    assert not (tmp_path / "nowhere" / "mlflow.db").exists()


def test_study_rejects_an_unknown_fix(tmp_path: Path) -> None:
    result = run_cli(["study", "--fixes", "baseline,l3"], cwd=tmp_path)
    assert result.returncode == 2 and "Unknown fix 'l3'; choose from: baseline, " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_mlflow_ui_shows_the_study_runs_in_a_real_browser(study: Study, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium) to render the MLflow UI")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui = subprocess.Popen([sys.executable, "-m", "experiments", "ui", "--port", str(port), "--tracking-uri",
                           store_uri(study.outputs)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health", ui, 180)
        # Sorting by name lists the children flat (sorted by time, the UI folds them under the parent).
        query = urllib.parse.urlencode({"searchFilter": f"tags.study = '{study.runs[0].data.tags['study']}'",
                                        "orderByKey": "attributes.run_name", "orderByAsc": "true"},
                                       quote_via=urllib.parse.quote)
        page = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=30000", "--dump-dom", f"{base}/#/experiments/{study.experiment_id}/runs?{query}"],
            capture_output=True, text=True, timeout=180, check=False,
        ).stdout
        missing = [r.info.run_name for r in study.runs if r.info.run_name not in page]
        assert not missing, f"run names not rendered: {missing}; page text starts {page[:500]!r}"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
