"""`experiments reproduce RUN_ID`: real training processes, a real sqlite store in a temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from experiments.tracking.store import prepare_experiment
from tests.conftest import FAST, run_cli, store_uri

pytestmark = pytest.mark.e2e

QUICK = [*FAST, "trainer.max_epochs=2"]


def _runs(outputs: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(store_uri(outputs))
    experiments = [e.experiment_id for e in client.search_experiments() if e.name != "Default"]
    return client, client.search_runs(experiments, order_by=["attributes.start_time ASC"])


def test_reproduce_reruns_a_run_into_a_new_tagged_run_with_identical_metrics(tmp_path: Path, outputs: Path) -> None:
    # Dropout and input noise draw random numbers every step: identical metrics need the same seeds.
    trained = run_cli(["train", f"paths.output_dir={outputs}", *QUICK, "data.options.n_samples=400", "model.dropout=0.2",
                       "regularization.input_noise=0.1", "log_checkpoints=last"], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    client, (original,) = _runs(outputs)

    # What the run recorded so it can be reproduced: the dataset as an MLflow input, the checkpoint.
    (dataset_input,) = original.inputs.dataset_inputs
    assert dataset_input.dataset.name == "seed_random"
    assert dataset_input.dataset.digest == original.data.tags["data.fingerprint"]
    input_tags = {t.key: t.value for t in dataset_input.tags}
    assert input_tags["split.train"] == "280" and input_tags["split.val"] == "60" and input_tags["split.test"] == "60"
    assert original.data.params["trainer.deterministic"] == "true"
    assert [a.path for a in client.list_artifacts(original.info.run_id, "checkpoints")] == ["checkpoints/last.ckpt"]

    result = run_cli(["reproduce", original.info.run_id, "--tracking-uri", store_uri(outputs)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "identical: all" in result.stdout, result.stdout[-3000:]
    assert "test/loss" in result.stdout and "val/loss" in result.stdout

    client, (first, second) = _runs(outputs)
    assert first.info.run_id == original.info.run_id
    assert second.data.tags["reproduces"] == original.info.run_id
    assert second.data.tags["reproduce.verdict"] == "identical"
    assert second.info.run_name == f"{original.info.run_name}-reproduced"
    assert second.data.tags["run_dir"] != original.data.tags["run_dir"]
    assert Path(second.data.tags["run_dir"], "checkpoints", "last.ckpt").is_file()
    compared = [k for k in original.data.metrics if k.startswith(("train/", "val/", "test/"))]
    assert compared and all(second.data.metrics[k] == original.data.metrics[k] for k in compared)


def test_changed_package_and_dataset_are_reported_and_strict_refuses(tmp_path: Path, outputs: Path) -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    table["label"] = (table.a + table.b > 0).astype(int)
    csv = tmp_path / "data.csv"
    table.to_csv(csv, index=False)
    trained = run_cli(["train", f"paths.output_dir={outputs}", *QUICK, "data=csv", f"data.options.path={csv}",
                       "data.options.target=label", "logger.log_model=false"], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    client, (original,) = _runs(outputs)

    # Another torch than the run recorded, and the data file edited since.
    client.set_tag(original.info.run_id, "env.torch", "1.0.0")
    table.loc[:99, "label"] = 1 - table.loc[:99, "label"]
    table.to_csv(csv, index=False)

    refused = run_cli(["reproduce", original.info.run_id, "--strict", "--tracking-uri", store_uri(outputs)],
                      cwd=tmp_path)
    assert refused.returncode == 2
    assert "package torch: recorded 1.0.0, now" in refused.stderr
    assert "dataset fingerprint: recorded" in refused.stderr
    assert "--strict: not reproducing run" in refused.stderr and "Traceback" not in refused.stderr
    assert len(_runs(outputs)[1]) == 1  # nothing trained

    warned = run_cli(["reproduce", original.info.run_id, "--tracking-uri", store_uri(outputs)], cwd=tmp_path)
    assert "warning: package torch: recorded 1.0.0" in warned.stderr
    assert "warning: dataset fingerprint" in warned.stderr
    assert warned.returncode == 1, warned.stderr[-3000:]  # half the labels flipped: the metrics differ
    assert "differs: largest difference" in warned.stdout
    client, runs = _runs(outputs)
    assert len(runs) == 2 and runs[1].data.tags["reproduce.verdict"] == "differs"


def test_unknown_run_and_missing_store_are_one_clear_line(tmp_path: Path, outputs: Path) -> None:
    prepare_experiment(store_uri(outputs), "seed_random")  # a real store without that run
    unknown = run_cli(["reproduce", "0123456789abcdef", "--tracking-uri", store_uri(outputs)], cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        f"error: MLflow run '0123456789abcdef' is not in the store {store_uri(outputs)}; check the id, or pass "
        "the store it was logged to with --tracking-uri (or MLFLOW_TRACKING_URI)."
    )
    empty = run_cli(["reproduce", "", "--tracking-uri", store_uri(outputs)], cwd=tmp_path)
    assert empty.returncode == 2
    assert empty.stderr.strip() == (
        "error: The run id is empty; give the MLflow run to reproduce, e.g. experiments reproduce RUN_ID.")
    missing = run_cli(["reproduce", "0123456789abcdef", "--tracking-uri", store_uri(tmp_path / "nowhere")],
                      cwd=tmp_path)
    assert missing.returncode == 2
    assert "There is no MLflow store at" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()
