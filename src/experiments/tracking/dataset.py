"""The run's data as an MLflow dataset input, so it shows in the UI's Datasets column.

One input per run: the whole source (before splitting) named after the dataset, its digest the
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

    source = datamodule.source
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": both are the same file
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_numpy(
            source.features,
            targets=source.targets,
            source=dataset_source(datamodule.dataset_name, options),
            name=datamodule.dataset_name,
            digest=datamodule.fingerprint,
        )
    tags = [InputTag("mlflow.data.context", "training")]
    tags += [InputTag(f"split.{name}", str(size)) for name, size in datamodule.arrays.sizes.items()]
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=tags)])
