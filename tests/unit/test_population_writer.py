"""The worker process that writes a population's job files, its members' opening records, epoch metrics and
learning curves: what lands in each run and file (the same text as written in the main process), what the
store refuses (its job fails with what the store said), a worker that died (the main process writes
instead), and Ctrl-C (left to the sweep)."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from experiments import population_writer
from experiments.data.datamodule import TabularDataModule
from experiments.population_writer import (
    PopulationWriter,
    population_writer_for,
    save_yaml_files,
    wait_for,
)
from experiments.tracking.dataset import dataset_input
from experiments.tracking.run_record import RunRecord, run_record, write_run_record
from tests.conftest import compose_train_config, store_uri

OPTIONS = {"n_samples": 60, "n_features": 3}


def _record(datamodule: TabularDataModule, lr: str) -> RunRecord:
    return RunRecord(params=[Param("optimizer.lr", lr), Param(f"p{lr}", "x")] + [Param(f"n{i}", str(i)) for i in range(150)],
                     tags=[RunTag("fix", "none")], config={"optimizer": {"lr": float(lr)}}, overrides=[f"optimizer.lr={lr}"],
                     git_diff="", dataset=dataset_input(datamodule, dict(OPTIONS)), columns="3 numeric columns\n")


def _not_here() -> None:
    pytest.fail("the worker died: the writing fell back to this process, which is not what this test checks")


def _setup(tmp_path: Path, runs: int) -> tuple[MlflowClient, list[str], TabularDataModule]:
    client = MlflowClient(store_uri(tmp_path))
    experiment = client.create_experiment("writer")
    datamodule = TabularDataModule("seed_random", dict(OPTIONS))
    datamodule.setup("fit")
    return client, [client.create_run(experiment).info.run_id for _ in range(runs)], datamodule


def test_each_record_lands_in_its_own_run(tmp_path: Path) -> None:
    client, run_ids, datamodule = _setup(tmp_path, 3)
    writer = PopulationWriter()
    try:
        records = [_record(datamodule, lr) for lr in ("0.1", "0.01", "0.001")]
        written = [writer.submit_record(store_uri(tmp_path), run_id, record) for run_id, record in zip(run_ids, records)]
        for future, run_id, record in zip(written, run_ids, records):
            wait_for(future, _not_here)
    finally:
        writer.close()
    for run_id, lr in zip(run_ids, ("0.1", "0.01", "0.001")):
        run = client.get_run(run_id)
        assert run.data.params["optimizer.lr"] == lr and len(run.data.params) == 152  # past MLflow's 100 a call
        assert run.data.tags["fix"] == "none"
        assert Path(client.download_artifacts(run_id, "config/config.yaml", str(tmp_path / run_id))).read_text() \
            == f"optimizer:\n  lr: {lr}\n"
        assert Path(client.download_artifacts(run_id, "config/overrides.yaml", str(tmp_path / run_id))).read_text() \
            == f"- optimizer.lr={lr}\n"
        assert client.download_artifacts(run_id, "data/columns.txt", str(tmp_path / run_id))
        (entry,) = run.inputs.dataset_inputs
        assert entry.dataset.digest == datamodule.fingerprint


def test_a_record_the_store_refuses_is_raised_to_the_caller(tmp_path: Path) -> None:
    client, (run_id,), datamodule = _setup(tmp_path, 1)
    writer = PopulationWriter()
    try:
        record = _record(datamodule, "0.1")
        client.log_param(run_id, "optimizer.lr", "0.5")  # MLflow refuses to change a param once logged
        with pytest.raises(MlflowException, match="optimizer.lr"):
            wait_for(writer.submit_record(store_uri(tmp_path), run_id, record), _not_here)
    finally:
        writer.close()
    assert client.get_run(run_id).data.params["optimizer.lr"] == "0.5"


def test_a_record_whose_worker_died_is_written_here(tmp_path: Path) -> None:
    client, (run_id,), datamodule = _setup(tmp_path, 1)
    writer = PopulationWriter()
    try:
        (process,) = writer._pool._processes.values()
        process.kill()
        process.join(10)
        record = _record(datamodule, "0.1")
        wait_for(writer.submit_record(store_uri(tmp_path), run_id, record), lambda: write_run_record(client, run_id, record))
    finally:
        writer.close()
    run = client.get_run(run_id)
    assert run.data.params["optimizer.lr"] == "0.1" and run.inputs.dataset_inputs


def test_a_small_population_or_a_switched_off_writer_writes_in_the_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(population_writer.os, "cpu_count", lambda: 2)
    assert population_writer_for(population_writer.MIN_MEMBERS - 1) is None
    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "population_writer")
    assert population_writer_for(64) is None


def test_a_machine_that_cannot_start_the_writer_writes_in_the_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process(*args: object, **kwargs: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    # What a process limit or a sandbox makes of a new process; not reproducible for root on a CI machine.
    monkeypatch.setattr(population_writer.os, "cpu_count", lambda: 2)
    started = population_writer_for(64)
    assert started is not None  # where processes start, a population of 64 gets its writer
    started.close()
    monkeypatch.setattr(population_writer, "ProcessPoolExecutor", no_process)
    assert population_writer_for(64) is None  # the population opens its members' records itself


# Values whose YAML is easy to get wrong: strings that read as other types, an escaped interpolation, an
# unresolved one, a missing value, a list of overrides.
TRICKY = ["+tags.version='1.0'", "+tags.flag='null'", "+tags.literal='\\${not.this}'",
          "+tags.where=${paths.output_dir}", "+tags.empty=''"]


def test_a_jobs_files_from_the_worker_are_the_files_omegaconf_saves(tmp_path: Path) -> None:
    cfg = compose_train_config(tmp_path / "outputs", TRICKY)
    job = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    configs = {"config.yaml": job, "hydra.yaml": OmegaConf.masked_copy(cfg, "hydra"),
               "overrides.yaml": cfg.hydra.overrides.task}
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    for name, config in configs.items():
        OmegaConf.save(config, here / name)
    values = {name: OmegaConf.to_container(config, enum_to_str=True) for name, config in configs.items()}
    writer = PopulationWriter()
    try:
        wait_for(writer.submit_files(there, values), _not_here)
    finally:
        writer.close()
    for name in configs:
        assert (there / name).read_text() == (here / name).read_text(), name
    assert "${paths.output_dir}" in (there / "config.yaml").read_text()  # saved unresolved, as Hydra saves it


def test_a_records_config_file_is_the_resolved_config_omegaconf_writes(tmp_path: Path) -> None:
    cfg = compose_train_config(tmp_path / "outputs", TRICKY)
    job = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    client, (run_id,), datamodule = _setup(tmp_path, 1)
    record = run_record(job, {}, ["seed=1"], {}, dataset_input(datamodule, dict(OPTIONS)), "columns\n")
    writer = PopulationWriter()
    try:
        wait_for(writer.submit_record(store_uri(tmp_path), run_id, record), _not_here)
    finally:
        writer.close()
    logged = Path(client.download_artifacts(run_id, "config/config.yaml", str(tmp_path / "read"))).read_text()
    assert logged == OmegaConf.to_yaml(job, resolve=True)
    assert str(tmp_path / "outputs") in logged and "${not.this}" in logged


def test_files_whose_worker_died_are_saved_here(tmp_path: Path) -> None:
    writer = PopulationWriter()
    try:
        (process,) = writer._pool._processes.values()
        process.kill()
        process.join(10)
        values = {"overrides.yaml": ["seed=1", "optimizer.lr=0.1"]}
        wait_for(writer.submit_files(tmp_path, values), lambda: save_yaml_files(tmp_path, values))
    finally:
        writer.close()
    assert (tmp_path / "overrides.yaml").read_text() == "- seed=1\n- optimizer.lr=0.1\n"


def test_save_yaml_files_makes_the_folder(tmp_path: Path) -> None:
    save_yaml_files(tmp_path / "a" / ".hydra", {"overrides.yaml": []})
    assert (tmp_path / "a" / ".hydra" / "overrides.yaml").read_text() == "[]\n"


def test_a_tracking_server_that_does_not_answer_is_reported_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The main process tells a server that did not answer the worker's writes from any other refusal, as
    it does for its own writes: the job then fails with the one sentence that says so."""
    import socket

    from experiments.tracking.server import in_one_sentence, server_unreachable

    with socket.socket() as probe:  # a port nothing listens on: every request is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    _, _, datamodule = _setup(tmp_path, 0)
    record = _record(datamodule, "0.1")
    writer = PopulationWriter()
    try:
        with pytest.raises(Exception) as raised:
            wait_for(writer.submit_record(f"http://127.0.0.1:{port}", "abc", record), _not_here)
    finally:
        writer.close()
    assert server_unreachable(raised.value)
    sentence = str(in_one_sentence(raised.value, in_sweep=True))
    assert sentence.startswith(f"the tracking server at http://127.0.0.1:{port} did not answer"), sentence


def test_only_a_callback_that_acts_as_a_job_starts_keeps_the_jobs_files_from_the_writer() -> None:
    from hydra._internal.callbacks import Callbacks

    from experiments.paths import config_dir
    from hydra_plugins.experiments_population_launcher.launcher import _watches_job_start

    ours = OmegaConf.load(config_dir() / "hydra" / "default.yaml").callbacks
    assert not _watches_job_start(Callbacks(OmegaConf.create({"hydra": {"callbacks": ours}})))
    reader = {"_target_": "tests.e2e.job_start_reader.JobStartReader", "out_dir": "unused"}
    assert _watches_job_start(Callbacks(OmegaConf.create({"hydra": {"callbacks": {**ours, "reader": reader}}})))


def test_metrics_and_a_file_handed_to_the_writer_land_in_the_run(tmp_path: Path) -> None:
    """A member's epoch metrics (written while its population trains) and its learning curve (logged as
    its run closes) go through the writer; `idle` says when all of it is written."""
    from mlflow.entities import Metric

    client, (run_id,), datamodule = _setup(tmp_path, 1)
    plot = tmp_path / "learning_curve.png"
    plot.write_bytes(b"\x89PNG not really")
    metrics = [Metric("val/loss", 1.0 / (epoch + 1), 1000 + epoch, epoch) for epoch in range(1500)]  # > 1000 a call
    writer = PopulationWriter()
    try:
        written = [writer.submit_record(store_uri(tmp_path), run_id, _record(datamodule, "0.1")),
                   writer.submit_metrics(store_uri(tmp_path), run_id, metrics)]
        wait_for_plot = writer.submit_artifact(store_uri(tmp_path), run_id, plot, "plots", _not_here)
        assert not writer.idle()  # the record alone takes longer than submitting
        for future in written:
            wait_for(future, _not_here)
        wait_for_plot()
        assert writer.idle()
    finally:
        writer.close()
    history = client.get_metric_history(run_id, "val/loss")
    assert sorted((m.step, m.value) for m in history) == [(m.step, m.value) for m in metrics]
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == ["plots/learning_curve.png"]
    assert Path(client.download_artifacts(run_id, "plots/learning_curve.png", str(tmp_path / "got"))).read_bytes() \
        == plot.read_bytes()


def test_metrics_the_store_refuses_are_raised_to_the_caller(tmp_path: Path) -> None:
    from mlflow.entities import Metric

    client, (run_id,), _ = _setup(tmp_path, 1)
    client.set_terminated(run_id, "FINISHED")
    client.delete_run(run_id)  # MLflow refuses to write to a deleted run
    writer = PopulationWriter()
    try:
        with pytest.raises(MlflowException, match="deleted"):
            wait_for(writer.submit_metrics(store_uri(tmp_path), run_id, [Metric("val/loss", 1.0, 1, 0)]), _not_here)
    finally:
        writer.close()


def test_ctrl_c_is_left_to_the_sweep(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group: the writer keeps writing what it was given
    (the sweep closes the runs KILLED after it), instead of failing the task it was in."""
    import os
    import signal
    import time

    client, (run_id,), datamodule = _setup(tmp_path, 1)
    writer = PopulationWriter()
    try:
        wait_for(writer.submit_files(tmp_path / "warm", {"overrides.yaml": []}), _not_here)  # started
        (process,) = writer._pool._processes.values()
        os.kill(process.pid, signal.SIGINT)
        time.sleep(0.5)
        wait_for(writer.submit_record(store_uri(tmp_path), run_id, _record(datamodule, "0.1")), _not_here)
    finally:
        writer.close()
    assert client.get_run(run_id).data.params["optimizer.lr"] == "0.1"


def test_a_member_whose_writer_died_writes_its_metrics_itself(tmp_path: Path) -> None:
    """A population member's epoch metrics go to the writer; once its worker has died, they are written in
    the sweep's own process as the run closes, and later ones are buffered there as a member's are."""
    from omegaconf import OmegaConf

    from experiments.callbacks.member_records import MOST_WAIT_S
    from experiments.population import Population
    from experiments.population_member import Member
    from experiments.tracking.logger import EpochMLFlowLogger

    class Workers:
        def __init__(self) -> None:
            self.started = PopulationWriter()

        def writer(self) -> PopulationWriter:
            return self.started

    workers = Workers()
    try:
        population = Population(1, workers=workers)  # type: ignore[arg-type]
        logger = EpochMLFlowLogger(experiment_name="members", tracking_uri=store_uri(tmp_path), flush_every_s=0.0)
        population._hand_off_metrics(Member(OmegaConf.create({"logger": {"log_model": False}}), logger=logger))
        assert logger.hand_off is not None
        logger.log_metrics({"val/loss": 0.9, "epoch": 0})  # handed to the worker
        (process,) = workers.started._pool._processes.values()
        process.kill()
        process.join(10)
        with pytest.raises(BrokenProcessPool):  # once the pool has noticed
            workers.started.submit_files(tmp_path / "probe", {}).result(timeout=30)
        logger.log_metrics({"val/loss": 0.8, "epoch": 1})  # refused: written here as the run closes
        assert logger.hand_off is None and logger.flush_every_s == MOST_WAIT_S
        logger.write_pending()
    finally:
        workers.started.close()
    history = MlflowClient(store_uri(tmp_path)).get_metric_history(logger.run_id, "val/loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.9), (1, 0.8)]


def test_every_member_logging_its_model_writes_its_own_metrics(tmp_path: Path) -> None:
    """`logger.log_model=true`: MLflow would read every metric written before the model back to link it,
    so the members' metrics stay with the sweep's process."""
    from omegaconf import OmegaConf

    from experiments.population import Population
    from experiments.population_member import Member
    from experiments.tracking.logger import EpochMLFlowLogger

    class Workers:
        def writer(self) -> object:
            return object()  # never asked to write

    population = Population(2, workers=Workers())  # type: ignore[arg-type]
    for log_model, handed_off in ((True, False), ("best", True), (False, True)):
        logger = EpochMLFlowLogger(experiment_name="members", tracking_uri=store_uri(tmp_path))
        population._hand_off_metrics(Member(OmegaConf.create({"logger": {"log_model": log_model}}), logger=logger))
        assert (logger.hand_off is not None) == handed_off, log_model
