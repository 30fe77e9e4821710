"""`experiments compare` on small real sweeps: what a user sees when the groups or the baseline they ask
for are not there, and the help text. Real `experiments` processes, a real sqlite MLflow store."""

from __future__ import annotations

import csv
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, run_cli, store_uri

pytestmark = pytest.mark.e2e

# One epoch, no model artifact: the runs only need to exist with their tags and a few metrics.
QUICK = [*FAST, "trainer.max_epochs=1", "logger.log_model=false"]


@dataclass
class Store:
    outputs: Path
    client: MlflowClient

    @property
    def uri(self) -> str:
        return store_uri(self.outputs)

    def parent_of(self, experiment: str) -> str:
        experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        parents = self.client.search_runs([experiment_id], "tags.`sweep.role` = 'parent'")
        assert len(parents) == 1
        return parents[0].info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Experiment `overfitting`: fix groups baseline, dropout, l2 (one seed). Experiment `plain`: four runs
    with no `fix` tag, split by a `team` tag."""
    root = tmp_path_factory.mktemp("compare")
    outputs = root / "outputs"
    # The sweep parent opens before a preset applies, so the experiment is named here (as `study` does).
    fixes = run_cli(["train", "-m", f"paths.output_dir={outputs}", *QUICK, "seed=1",
                     "logger.experiment_name=overfitting",
                     "experiment=overfitting/baseline,overfitting/dropout,overfitting/l2"], cwd=root)
    assert fixes.returncode == 0, fixes.stderr[-3000:]
    plain = run_cli(["train", "-m", f"paths.output_dir={outputs}", *QUICK, "logger.experiment_name=plain",
                     "data.options.n_samples=300", "seed=1,2", "+tags.team=red,blue"], cwd=root)
    assert plain.returncode == 0, plain.stderr[-3000:]
    return Store(outputs, MlflowClient(store_uri(outputs)))


def compare(store: Store, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(["compare", "--tracking-uri", store.uri, *args], cwd=cwd)


def test_a_baseline_that_names_no_group_is_one_line_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = compare(store, tmp_path, "--experiment", "overfitting", "--baseline", "base",
                     "--output", str(report))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: --baseline base matches no fix group; the groups are: baseline, dropout, l2."]
    assert not report.exists()
    assert store.client.list_artifacts(store.parent_of("overfitting"), "report") == []


def test_a_named_baseline_is_the_one_every_group_is_compared_with(store: Store, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = compare(store, tmp_path, "--experiment", "overfitting", "--baseline", "dropout", "--output",
                     str(report), "--no-log")
    assert result.returncode == 0, result.stderr[-2000:]
    with (report / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["fix"] == "dropout"  # the baseline row comes first
    assert "No fix=" not in result.stdout


def test_without_the_default_baseline_the_note_names_the_groups(store: Store, tmp_path: Path) -> None:
    result = compare(store, tmp_path, "--experiment", "overfitting", "--filter", "tags.fix != 'baseline'",
                     "--output", str(tmp_path / "report"), "--no-log")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pass --baseline with one of: dropout, l2." in result.stdout


def test_runs_without_the_group_tag_are_told_the_tags_they_do_have(store: Store, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = compare(store, tmp_path, "--experiment", "plain", "--output", str(report))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0] == ("error: None of the 4 runs has a 'fix' tag to group by; pass --group-by with one of "
                        "their tags that splits them into groups: team.")
    assert not report.exists()


def test_grouping_by_a_suggested_tag_works(store: Store, tmp_path: Path) -> None:
    result = compare(store, tmp_path, "--experiment", "plain", "--group-by", "team", "--baseline", "red",
                     "--output", str(tmp_path / "report"), "--no-log")
    assert result.returncode == 0, result.stderr[-2000:]
    with (tmp_path / "report" / "report.csv").open() as handle:
        assert next(csv.DictReader(handle))["fix"] == "red"  # the baseline row comes first


def test_help_shows_plain_percent_signs(tmp_path: Path) -> None:
    result = run_cli(["compare", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "95% CI" in result.stdout and "%%" not in result.stdout
