"""The run's data as an MLflow dataset input, so it shows in the UI's Datasets column.

One input per run: the whole raw table (before splitting; its schema is the table's columns) named after the dataset, its digest the
content fingerprint (the same data gives the same digest, so runs on identical data share one
dataset entry), the split sizes as input tags.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any


def dataset_source(dataset: str, options: dict[str, Any]) -> Any:
    """A CSV is its file; built-in and generated sets are code (loader name + options)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    if dataset == "csv" and options.get("path"):
        return str(Path(str(options["path"])).expanduser().resolve())  # MLflow resolves a path to a file source
    return CodeDatasetSource(tags={"loader": f"experiments.data.sources:{dataset}",
                                   "options": json.dumps(options, sort_keys=True, default=str)})


SCHEMA_SAMPLE_ROWS = 1000


def schema_sample(frame: Any) -> Any:
    """The first rows plus, for every column with gaps, its first gap: the same schema as the whole table.

    MLflow infers a column's `required` flag by testing every cell in Python, which takes seconds per
    million rows; types come from the dtypes and a column is optional exactly when it has a gap.
    """
    gaps = frame.isna()
    gap_rows = [int(gaps[column].to_numpy().argmax()) for column in frame.columns if gaps[column].any()]
    rows = sorted(set(range(min(len(frame), SCHEMA_SAMPLE_ROWS))) | set(gap_rows))
    return frame.iloc[rows]


# What a database says when two runs file the same new dataset at the same moment: MLflow's store looks
# the dataset up, then inserts it, so the slower of the two inserts it again (seen on a shared PostgreSQL
# tracking server when two sweep workers start together). Its transaction is rolled back; the dataset
# exists now, and a second try links the run to it.
_ALREADY_FILED = ("dataset_pk", "datasets.experiment_id", "datasets.PRIMARY")


def log_dataset_input(client: Any, run_id: str, entry: Any) -> None:
    """Link the run to `entry` (a `DatasetInput`, see `dataset_input`), filing the dataset if it is new."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_inputs(run_id, datasets=[entry])
    except MlflowException as err:
        if not any(mark in str(err) for mark in _ALREADY_FILED):
            raise
        client.log_inputs(run_id, datasets=[entry])


# The entry is the same for every run on the same table and options (a population's members, a sweep's
# jobs in one process): built once, as MLflow's profile and schema of a table take a while.
_INPUTS: dict[tuple[str, ...], Any] = {}


def dataset_input(datamodule: Any, options: dict[str, Any]) -> Any:
    import mlflow.data
    from mlflow.entities import Dataset, DatasetInput, InputTag

    sizes = datamodule.arrays.sizes
    key = (datamodule.fingerprint, datamodule.dataset_name, str(datamodule.target.name),
           json.dumps(options, sort_keys=True, default=str), json.dumps(sizes, sort_keys=True))
    if key in _INPUTS:
        return _INPUTS[key]
    frame = datamodule.frame
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": both are the same file
        warnings.simplefilter("ignore")  # and MLflow's hint about integer columns
        # The raw table's columns, so the dataset's schema names the user's columns and their types.
        config = mlflow.data.from_pandas(
            schema_sample(frame),
            targets=datamodule.target.name,
            source=dataset_source(datamodule.dataset_name, options),
            name=datamodule.dataset_name,
            digest=datamodule.fingerprint,
        ).to_dict()
    config["profile"] = json.dumps({"num_rows": len(frame), "num_elements": int(frame.size)})
    entity = Dataset(**config)
    tags = [InputTag("mlflow.data.context", "training")]
    tags += [InputTag(f"split.{name}", str(size)) for name, size in sizes.items()]
    _INPUTS.clear()  # one table at a time: a sweep over several tables keeps none of the others
    _INPUTS[key] = DatasetInput(entity, tags=tags)
    return _INPUTS[key]
