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


def log_dataset_input(client: Any, run_id: str, datamodule: Any, options: dict[str, Any]) -> None:
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": both are the same file
        warnings.simplefilter("ignore")
        # The raw table, so the dataset's schema names the user's columns and their types.
        dataset = mlflow.data.from_pandas(
            datamodule.frame,
            targets=datamodule.target.name,
            source=dataset_source(datamodule.dataset_name, options),
            name=datamodule.dataset_name,
            digest=datamodule.fingerprint,
        )
        entity = dataset._to_mlflow_entity()  # the schema is inferred here (MLflow hints about integer columns)
    tags = [InputTag("mlflow.data.context", "training")]
    tags += [InputTag(f"split.{name}", str(size)) for name, size in datamodule.arrays.sizes.items()]
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])
