"""A member of a population trains as the same config trains alone: per optimizer, per overfitting fix,
per architecture and task, every logged metric at every epoch agrees within float tolerance.

In-process (no process start per run) against two real sqlite MLflow stores: one for the populations,
one for the same configs trained one by one through `train(cfg)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from experiments.population import Population
from experiments.population_grouping import population_key
from experiments.train import train
from tests.conftest import compose_train_config, store_uri

pytestmark = pytest.mark.e2e

SHORT = ["trainer.max_epochs=3", "data.options.n_samples=300", "logger.log_model=false"]

SWA = ["+callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging",
       "+callbacks.swa.swa_lrs=0.0001", "+callbacks.swa.swa_epoch_start=0.5", "+callbacks.swa.annealing_epochs=1"]
# One population per line; within it, each member's own overrides (a `case` tag names it).
POPULATIONS: dict[str, list[list[str]]] = {
    "adam_fixes": [
        ["seed=1"],
        ["seed=2", "optimizer.lr=0.01", "optimizer.betas=[0.8,0.99]"],
        ["regularization.l1=0.001"],
        ["regularization.l2=0.01"],
        ["model.dropout=0.3"],
        ["regularization.input_noise=0.3"],
        ["regularization.label_smoothing=0.1"],
        ["regularization.max_norm=0.3", "optimizer.lr=0.05"],
        ["optimizer.weight_decay=0.1"],
        ["callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=0.05"],
        ["callbacks.loss_threshold.threshold=0.75"],
        ["regularization.l2=0.001", "model.dropout=0.3", "callbacks.early_stopping.patience=2"],  # combined
    ],
    # AdamW members train in an Adam optimizer, a flag per group; an Adam member (coupled weight decay) with
    # them, after an AdamW member whose options are the optimizer's defaults.
    "adamw": [["optimizer=adamw", "optimizer.weight_decay=0.01"], ["optimizer=adamw", "optimizer.weight_decay=1.0"],
              ["optimizer.weight_decay=0.1", "seed=4"]],
    "sgd": [["optimizer=sgd", "optimizer.lr=0.1"], ["optimizer=sgd", "optimizer.nesterov=true", "seed=3"]],
    "rmsprop": [["optimizer=rmsprop"], ["optimizer=rmsprop", "optimizer.lr=0.01"]],
    "step_scheduler": [["scheduler=step", "scheduler.step_size=1", "optimizer.lr=0.01"],
                       ["scheduler=step", "scheduler.step_size=1", "seed=5"]],
    "batchnorm": [["model.norm=batch"], ["model.norm=batch", "seed=2", "model.dropout=0.2"]],
    "layernorm": [["model.norm=layer"], ["model.norm=layer", "seed=2"]],
    "multiclass": [["data=iris"], ["data=iris", "regularization.label_smoothing=0.1", "seed=2"]],
    "regression": [["data=diabetes"], ["data=diabetes", "model.dropout=0.1", "seed=2"]],
    "swa": [[*SWA], [*SWA, "seed=2", "regularization.l2=0.01"]],
}
# A batched matmul rounds differently from a single one in the last bit; batch norm divides by the batch's
# spread, which magnifies that, so after 3–4 epochs such members differ from the run alone by ~1e-4 in loss
# (a rank flip or two in AUROC). Everywhere else members agree to ~1e-7.
TOLERANCE = {"batchnorm": {"rel": 1e-3, "abs": 5e-3}}
CASES = [(group, i) for group, members in POPULATIONS.items() for i in range(len(members))]


def _config(outputs: Path, group: str, i: int) -> Any:
    overrides = [*SHORT, *POPULATIONS[group][i], f"+tags.case={group}-{i}"]
    overrides = [o for o in overrides if not o.startswith("data.options") or "data=" not in " ".join(overrides)]
    return compose_train_config(outputs, overrides, run_name=f"{group}-{i}")


def _as_job(cfg: Any) -> Any:
    """The config as a launcher hands it to a job: without Hydra's own node (as `run_job` does too)."""
    return OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"])


def _records(outputs: Path) -> dict[str, dict[str, Any]]:
    """What each run recorded as it opened: params, tags, config files, column report, dataset entry."""
    client = MlflowClient(store_uri(outputs))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    records = {}
    for run in runs:
        folder = Path(client.download_artifacts(run.info.run_id, "", str(outputs / "read" / run.info.run_id)))
        texts: dict[str, Any] = {str(path.relative_to(folder)): path.read_text().replace(str(outputs), "OUT")
                                 for path in sorted(folder.rglob("*")) if path.suffix in (".yaml", ".txt", ".diff")}
        # These configs alone keep Hydra's own node, which a launcher takes off every job's config.
        texts["config/config.yaml"] = {k: v for k, v in yaml.safe_load(texts["config/config.yaml"]).items()
                                       if k != "hydra"}
        records[run.data.tags["case"]] = {
            "params": {k: v.replace(str(outputs), "OUT") for k, v in run.data.params.items()
                       if not k.startswith("hydra.")},
            "tags": {k: v.replace(str(outputs), "OUT") for k, v in run.data.tags.items() if k != "mlflow.runName"},
            "files": texts,
            "datasets": [(d.dataset.name, d.dataset.digest, d.dataset.schema, sorted((t.key, t.value) for t in d.tags))
                         for d in run.inputs.dataset_inputs]}
    return records


def _histories(outputs: Path) -> dict[str, tuple[str, dict[str, list[tuple[int, float]]]]]:
    client = MlflowClient(store_uri(outputs))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    return {run.data.tags["case"]: (run.info.status, {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics}) for run in runs}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # a module fixture runs before the per-test isolation
    folder = tmp_path_factory.mktemp("equivalence")
    together, alone = folder / "together", folder / "alone"
    objectives: dict[str, Any] = {}
    for group, members in POPULATIONS.items():
        keys = {population_key(_config(together, group, i)) for i in range(len(members))}
        assert len(keys) == 1 and None not in keys, f"{group} would not train as one population"
        population = Population(len(members))
        for i in range(len(members)):
            job = _as_job(_config(together, group, i))
            population.check(i, job)
            population.open(i, job)
        objectives[f"{group}-writer"] = population.writer is not None
        population.train()
        for i in range(len(members)):
            _config(together, group, i)
            objectives[f"{group}-{i}"] = population.close(i)
    # MLflow's `set_tracking_uri` (called by Lightning's logger) exports the store as MLFLOW_TRACKING_URI,
    # which would send the runs below to the first store: each process of a user's has one store.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    alone_objectives = {}
    for group, i in CASES:
        alone_objectives[f"{group}-{i}"] = train(_config(alone, group, i))["val/loss_best"]
    return _histories(together), _histories(alone), {"together": objectives, "alone": alone_objectives,
                                                     "records": (_records(together), _records(alone))}


@pytest.mark.parametrize(("group", "i"), CASES, ids=[f"{g}-{i}" for g, i in CASES])
def test_a_member_logs_what_the_same_config_logs_alone(trained: Any, group: str, i: int) -> None:
    together, alone, objectives = trained
    case = f"{group}-{i}"
    (status, got), (want_status, want) = together[case], alone[case]
    assert status == want_status == "FINISHED"
    assert sorted(got) == sorted(want)
    for key, series in want.items():
        assert [step for step, _ in got[key]] == [step for step, _ in series], key
        tolerance = TOLERANCE.get(group, {"rel": 1e-5, "abs": 1e-6})
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in series], **tolerance), key
    assert objectives["together"][case] == pytest.approx(objectives["alone"][case], **TOLERANCE.get(group, {}))


@pytest.mark.parametrize(("group", "i"), CASES, ids=[f"{g}-{i}" for g, i in CASES])
def test_a_member_records_what_the_same_config_records_alone(trained: Any, group: str, i: int) -> None:
    """Params, tags, config files, column report and dataset entry: the same, whether the record was
    written by the population's record writer (a worker process, from 8 members on) or here."""
    together, alone = trained[2]["records"]
    case = f"{group}-{i}"
    got, want = together[case], alone[case]
    assert got["files"] == want["files"] and set(got["files"]) >= {"config/config.yaml", "data/columns.txt"}
    assert got["params"] == want["params"]
    assert got["tags"] == want["tags"]
    assert got["datasets"] == want["datasets"] and len(got["datasets"]) == 1


def test_a_large_population_writes_its_records_in_a_worker(trained: Any) -> None:
    """The 12-member population's records went through the record writer; the 2-member ones' did not."""
    objectives = trained[2]["together"]
    assert objectives["adam_fixes-writer"] is True and objectives["sgd-writer"] is False


def test_the_stopping_rules_stopped_members_early(trained: Any) -> None:
    """The early-stopping and threshold cases mean something only if their runs stopped before the end."""
    together, alone, _ = trained
    for case in ("adam_fixes-9", "adam_fixes-10"):
        epochs = [step for step, _ in alone[case][1]["val/loss"]]
        assert len(epochs) < 3, case
        assert [step for step, _ in together[case][1]["val/loss"]] == epochs
    assert "early_stopping/stopped_epoch" in together["adam_fixes-9"][1]
