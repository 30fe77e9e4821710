"""`experiments eval`: test metrics of a saved model, on its own test split or on a CSV.

    experiments eval run_id=RUN_ID                 the model logged in that MLflow run
    experiments eval ckpt_path=…/best-epoch004.ckpt a checkpoint written by `experiments train`
    … csv=new.csv [target=label]                   other data instead of the test split

The model is rebuilt from the config its run recorded and evaluated by the same `test_step` and
metrics as the training's test stage, so on the test split the numbers equal that stage's. A CSV is
scaled with the statistics of the run's own training split, and its labels are mapped to the
run's classes. Results go to a new MLflow run, `eval-<run name>`, tagged `evaluates=RUN_ID`, in the
source run's experiment: the source run keeps the test metrics of its training, and several
evaluations (other data, other checkpoints) stay side by side.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError, instantiated
from experiments.paths import project_root
from experiments.tracking.lookup import find_run, find_trained_run, open_store, recorded_config, run_label
from experiments.tracking.store import prepare_experiment, resolve_tracking_uri

KEYS = ("run_id", "ckpt_path", "csv", "target", "tracking_uri")
EVALUATES_TAG = "evaluates"


@dataclass
class Source:
    """What is evaluated: the config that built it, its weights' origin, and the run it came from."""

    config: DictConfig
    uri: str
    run: Any | None  # the training run, when it is in the store
    checkpoint: dict[str, Any] | None  # weights from a checkpoint, else the run's logged model
    origin: str  # "model of run …" or the checkpoint path


def parse_args(argv: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS or not value:
            raise UserError(f"experiments eval takes key=value arguments with keys {', '.join(KEYS)}; got {arg!r}.")
        values[key] = value
    if ("run_id" in values) == ("ckpt_path" in values):
        raise UserError("experiments eval needs exactly one of run_id=… (a run's logged model) or ckpt_path=….")
    if "target" in values and "csv" not in values:
        raise UserError("target=… names the label column of csv=…; give the CSV too.")
    return values


def store_uri(explicit: str | None, recorded: str | None = None) -> str:
    """tracking_uri=…, else $MLFLOW_TRACKING_URI, else the store a checkpoint recorded, else the project's."""
    if explicit or os.environ.get("MLFLOW_TRACKING_URI") or not recorded:
        return resolve_tracking_uri(explicit, project_root() / "outputs")
    return recorded


def load_source(args: dict[str, str]) -> Source:
    if "run_id" in args:
        uri = store_uri(args.get("tracking_uri"))
        client = open_store(uri, "evaluate")
        run = find_trained_run(client, args["run_id"], uri, "evaluate")
        return Source(recorded_config(client, run), uri, run, None, f"model of run {run_label(run)}")

    from experiments.checkpoints import read_checkpoint, run_record

    path = args["ckpt_path"]
    checkpoint = read_checkpoint(path)
    record = run_record(checkpoint)
    if record is None:
        raise UserError(
            f"Checkpoint {path!r} carries no run config (it was not written by `experiments train`), so its model "
            "and data cannot be rebuilt."
        )
    config = OmegaConf.create(record["config"])
    assert isinstance(config, DictConfig)
    uri = store_uri(args.get("tracking_uri"), record.get("tracking_uri"))
    run = None
    if record.get("mlflow_run_id"):
        client = open_store(uri, "evaluate")
        try:
            run = find_run(client, record["mlflow_run_id"], uri, "evaluate")
        except UserError:
            raise UserError(
                f"Checkpoint {path!r} belongs to MLflow run {record['mlflow_run_id']} of the store "
                f"{record.get('tracking_uri')}, which is not in the store {uri}; pass tracking_uri= of the run's store."
            ) from None
    return Source(config, uri, run, checkpoint, str(Path(path).expanduser().resolve()))


def build_module(source: Source, datamodule: Any) -> Any:
    """The training's LightningModule around the saved weights (only its test metrics are used)."""
    from experiments.models.mlp import build_mlp
    from experiments.models.module import ExperimentModule

    cfg = source.config
    if source.checkpoint is not None:
        from experiments.checkpoints import check_fits

        kwargs = OmegaConf.to_container(cfg.model, resolve=True)
        assert isinstance(kwargs, dict)
        kwargs.pop("input_dim", None)
        net = build_mlp(datamodule.input_dim, datamodule.num_outputs, **kwargs)
    else:
        net = _logged_net(source)
    module = ExperimentModule(
        net,
        task=datamodule.task,
        num_classes=max(datamodule.source.num_classes, 2),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),  # type: ignore[arg-type]
    )
    if source.checkpoint is not None:
        check_fits(source.checkpoint, module, source.origin)
        module.load_state_dict(source.checkpoint["state_dict"])
    return module


def _logged_net(source: Source) -> Any:
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException

    from experiments.tracking.mlflow_pytorch import import_mlflow_pytorch

    assert source.run is not None
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its notes about pickled models are not news here
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(source.uri)
    try:
        predictor = import_mlflow_pytorch().load_model(f"runs:/{source.run.info.run_id}/model", map_location="cpu")
    except (MlflowException, OSError):  # no model logged
        raise UserError(
            f"MLflow run {source.run.info.run_id} has no logged model (it trained with logger.log_model=false); "
            "evaluate one of its checkpoints with ckpt_path=… instead."
        ) from None
    finally:
        mlflow.set_tracking_uri(previous)
    return predictor.net


def csv_split(datamodule: Any, config: DictConfig, path: str, target: str | None) -> tuple[Any, Any]:
    """Features and labels of a CSV, prepared exactly as the run's training data was."""
    import numpy as np
    import pandas as pd
    from sklearn.preprocessing import StandardScaler

    from experiments.data.sources import load_csv
    from experiments.data.split import split_data

    data_cfg = config.data
    default_target = data_cfg.options.get("target") if data_cfg.dataset == "csv" else None
    target = target or default_target
    if not target:
        raise UserError("csv=… needs target=<label column>: the run's data had no named target column.")
    names = list(datamodule.source.feature_names)
    file = Path(path).expanduser()
    columns = list(pd.read_csv(file, nrows=0).columns) if file.is_file() else []
    # The run's feature columns by name when the CSV has them all, else every column but the target.
    x, y, _ = load_csv(path, target, names if all(n in columns for n in names) else None, setting="csv")
    if x.shape[1] != datamodule.input_dim:
        raise UserError(
            f"CSV {Path(path).name!r} has {x.shape[1]} feature columns, the model takes {datamodule.input_dim} "
            f"({', '.join(names)})."
        )
    x = x.astype(np.float32)
    if data_cfg.get("standardize_features", True):
        split = data_cfg.split
        raw = split_data(datamodule.source, split.train, split.val, split.test, data_cfg.split_seed)
        x = StandardScaler().fit(raw.x_train).transform(x).astype(np.float32)
    task = datamodule.task
    if task == "regression":
        return x, y.astype(np.float32)
    # The run encoded its labels as indices of their sorted unique values; use the same mapping.
    if data_cfg.dataset == "csv":
        _, original_y, _ = load_csv(data_cfg.options.path, data_cfg.options.target, data_cfg.options.get("features"))
        classes = np.unique(original_y)
    else:
        classes = np.arange(datamodule.source.num_classes)
    unknown = sorted(set(np.unique(y).tolist()) - set(classes.tolist()))
    if unknown:
        raise UserError(
            f"CSV {Path(path).name!r} has labels the model never saw: {unknown[:5]}; known: {classes.tolist()[:20]}."
        )
    return x, np.searchsorted(classes, y).astype(np.int64)


def evaluate(source: Source, csv: str | None, target: str | None) -> tuple[dict[str, float], str, int]:
    """Test metrics, a description of the data evaluated, and its number of rows."""
    from experiments.import_shortcuts import import_torchmetrics

    import_torchmetrics()
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import TensorDataset

    from experiments.data.loader import batch_loader
    from experiments.models.module import tested_metrics
    from experiments.runtime import choose_eval_batch_size, quiet_lightning_warnings, widest_layer

    quiet_lightning_warnings()
    cfg = source.config
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    datamodule = instantiated(cfg.data, _convert_="all")  # e.g. the recorded CSV is gone: one sentence
    module = build_module(source, datamodule)
    if csv:
        x, y = csv_split(datamodule, cfg, csv, target)
        dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        data_label = f"csv {Path(csv).expanduser().resolve()}"
    else:
        if datamodule.arrays.sizes["test"] == 0:
            raise UserError("The run's data config has an empty test split (data.split.test=0); pass csv=… to evaluate.")
        dataset = datamodule.tensors("test")
        data_label = "test split"
    rows = choose_eval_batch_size(cfg.data.get("eval_batch_size", "auto"),
                                  widest_layer(datamodule.input_dim, cfg.model.hidden_dims))
    loader = batch_loader(dataset, rows, shuffle=False, seed=0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         deterministic=bool(cfg.trainer.get("deterministic", True)))
    trainer.test(module, dataloaders=loader, verbose=False)
    return tested_metrics(trainer), data_label, len(dataset)


def log_evaluation(source: Source, metrics: dict[str, float], data_label: str, n_rows: int) -> tuple[str, str]:
    """A new run beside the source run: `eval-<name>`, tagged `evaluates=<run id>`."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    name = source.run.info.run_name if source.run is not None else Path(source.origin).stem
    experiment_id = (source.run.info.experiment_id if source.run is not None
                     else prepare_experiment(source.uri, str(source.config.logger.experiment_name)))
    client = MlflowClient(source.uri)
    tags = {"mlflow.runName": f"eval-{name}", "eval.weights": source.origin, "eval.data": data_label,
            "eval.rows": str(n_rows)}
    if source.run is not None:
        tags[EVALUATES_TAG] = source.run.info.run_id
    run = client.create_run(experiment_id, run_name=f"eval-{name}")
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id, experiment_id


def print_metrics(metrics: dict[str, float], source: Source, data_label: str, eval_run_id: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)  # ids and paths stay whole, to copy and paste
    console.print(f"Evaluated {source.origin} on the {data_label}")
    table = Table(header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.6g}")
    console.print(table)
    link = f" (evaluates {source.run.info.run_id})" if source.run is not None else ""
    console.print(f"MLflow eval run: [bold]{eval_run_id}[/bold]{link}")


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    args = parse_args(argv)
    if "csv" in args:  # before the model loads: a mistyped path is refused at once
        from experiments.data.sources import csv_file

        csv_file(args["csv"], "csv")
    source = load_source(args)
    metrics, data_label, n_rows = evaluate(source, args.get("csv"), args.get("target"))
    eval_run_id, _ = log_evaluation(source, metrics, data_label, n_rows)
    print_metrics(metrics, source, data_label, eval_run_id)
    sys.stdout.flush()
    return 0
