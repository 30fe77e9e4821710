"""A run's dataset input is filed even when another run files the same new dataset at the same moment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from experiments.data.datamodule import TabularDataModule
from experiments.tracking.dataset import dataset_input, log_dataset_input
from tests.conftest import store_uri

OPTIONS = {"n_samples": 60, "n_features": 3}
# What a PostgreSQL tracking server answered when two sweep workers filed the same dataset together.
RACE = ('BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique constraint '
        '"dataset_pk" DETAIL: Key (experiment_id, name, digest)=(1, seed_random, 50fd69fd74077c1f) already exists.')


class _LosesTheRace:
    """A real client whose first filing loses the race: another run files the same dataset first, and
    the store refuses the second insert as the database did (the timing itself cannot be forced)."""

    def __init__(self, client: MlflowClient, rival_run: str, error: str) -> None:
        self.client, self.rival_run, self.error, self.calls = client, rival_run, error, 0

    def log_inputs(self, run_id: str, datasets: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            self.client.log_inputs(self.rival_run, datasets=datasets)
            raise MlflowException(self.error)
        self.client.log_inputs(run_id, datasets=datasets)


def _setup(tmp_path: Path) -> tuple[MlflowClient, str, str, TabularDataModule]:
    client = MlflowClient(store_uri(tmp_path))
    experiment = client.create_experiment("race")
    first, second = (client.create_run(experiment).info.run_id for _ in range(2))
    datamodule = TabularDataModule("seed_random", dict(OPTIONS))
    datamodule.setup("fit")
    return client, first, second, datamodule


def test_the_run_that_loses_the_race_is_linked_to_the_dataset_the_other_filed(tmp_path: Path) -> None:
    client, mine, rival, datamodule = _setup(tmp_path)
    racing = _LosesTheRace(client, rival, RACE)
    log_dataset_input(racing, mine, dataset_input(datamodule, dict(OPTIONS)))
    assert racing.calls == 2
    (entry,) = client.get_run(mine).inputs.dataset_inputs
    (rival_entry,) = client.get_run(rival).inputs.dataset_inputs
    assert entry.dataset.digest == rival_entry.dataset.digest == datamodule.fingerprint


def test_any_other_refusal_is_not_retried(tmp_path: Path) -> None:
    client, mine, rival, datamodule = _setup(tmp_path)
    racing = _LosesTheRace(client, rival, "RESOURCE_DOES_NOT_EXIST: Run 'x' not found")
    with pytest.raises(MlflowException, match="not found"):
        log_dataset_input(racing, mine, dataset_input(datamodule, dict(OPTIONS)))
    assert racing.calls == 1 and not client.get_run(mine).inputs.dataset_inputs
