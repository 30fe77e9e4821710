"""The worker process that writes a population's members' opening records: what lands in each run, a
record the store refuses (its job fails with what the store said), and a worker that died (the record is
written by the main process instead)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from experiments.data.datamodule import TabularDataModule
from experiments.tracking import record_writer
from experiments.tracking.dataset import dataset_input
from experiments.tracking.record_writer import RecordWriter, record_writer_for, wait_for_record
from experiments.tracking.run_record import RunRecord
from tests.conftest import store_uri

OPTIONS = {"n_samples": 60, "n_features": 3}


def _record(datamodule: TabularDataModule, lr: str) -> RunRecord:
    return RunRecord(params=[Param("optimizer.lr", lr), Param(f"p{lr}", "x")] + [Param(f"n{i}", str(i)) for i in range(150)],
                     tags=[RunTag("fix", "none")], config_files={"config.yaml": f"optimizer:\n  lr: {lr}\n"},
                     dataset=dataset_input(datamodule, dict(OPTIONS)), columns="3 numeric columns\n")


def _setup(tmp_path: Path, runs: int) -> tuple[MlflowClient, list[str], TabularDataModule]:
    client = MlflowClient(store_uri(tmp_path))
    experiment = client.create_experiment("writer")
    datamodule = TabularDataModule("seed_random", dict(OPTIONS))
    datamodule.setup("fit")
    return client, [client.create_run(experiment).info.run_id for _ in range(runs)], datamodule


def test_each_record_lands_in_its_own_run(tmp_path: Path) -> None:
    client, run_ids, datamodule = _setup(tmp_path, 3)
    writer = RecordWriter()
    try:
        records = [_record(datamodule, lr) for lr in ("0.1", "0.01", "0.001")]
        written = [writer.submit(store_uri(tmp_path), run_id, record) for run_id, record in zip(run_ids, records)]
        for future, run_id, record in zip(written, run_ids, records):
            wait_for_record(future, client, run_id, record)
    finally:
        writer.close()
    for run_id, lr in zip(run_ids, ("0.1", "0.01", "0.001")):
        run = client.get_run(run_id)
        assert run.data.params["optimizer.lr"] == lr and len(run.data.params) == 152  # past MLflow's 100 a call
        assert run.data.tags["fix"] == "none"
        assert Path(client.download_artifacts(run_id, "config/config.yaml", str(tmp_path / run_id))).read_text() \
            == f"optimizer:\n  lr: {lr}\n"
        assert client.download_artifacts(run_id, "data/columns.txt", str(tmp_path / run_id))
        (entry,) = run.inputs.dataset_inputs
        assert entry.dataset.digest == datamodule.fingerprint


def test_a_record_the_store_refuses_is_raised_to_the_caller(tmp_path: Path) -> None:
    client, (run_id,), datamodule = _setup(tmp_path, 1)
    writer = RecordWriter()
    try:
        record = _record(datamodule, "0.1")
        client.log_param(run_id, "optimizer.lr", "0.5")  # MLflow refuses to change a param once logged
        with pytest.raises(MlflowException, match="optimizer.lr"):
            wait_for_record(writer.submit(store_uri(tmp_path), run_id, record), client, run_id, record)
    finally:
        writer.close()
    assert client.get_run(run_id).data.params["optimizer.lr"] == "0.5"


def test_a_record_whose_worker_died_is_written_here(tmp_path: Path) -> None:
    client, (run_id,), datamodule = _setup(tmp_path, 1)
    writer = RecordWriter()
    try:
        (process,) = writer._pool._processes.values()
        process.kill()
        process.join(10)
        record = _record(datamodule, "0.1")
        wait_for_record(writer.submit(store_uri(tmp_path), run_id, record), client, run_id, record)
    finally:
        writer.close()
    run = client.get_run(run_id)
    assert run.data.params["optimizer.lr"] == "0.1" and run.inputs.dataset_inputs


def test_a_small_population_or_a_switched_off_writer_writes_in_the_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record_writer.os, "cpu_count", lambda: 2)
    assert record_writer_for(record_writer.MIN_MEMBERS - 1) is None
    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "record_writer")
    assert record_writer_for(64) is None
