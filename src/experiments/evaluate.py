"""`experiments eval`: test metrics of a saved model, on its own test split or on a CSV.

    experiments eval run_id=RUN_ID                 the model logged in that MLflow run
    experiments eval ckpt_path=…/best-epoch004.ckpt a checkpoint written by `experiments train`
    … csv=new.csv [target=label]                   other data instead of the test split

The model is evaluated by the same `test_step` and metrics as the training's test stage, so on the
test split the numbers equal that stage's. A CSV (or Parquet) table goes through the run's logged
pipeline: columns matched by name only (any order, extra ones ignored, a missing one refused), the
preprocessing fitted on the run's training split, labels mapped to the run's classes. Results go to a
new MLflow run, `eval-<run name>`, tagged `evaluates=RUN_ID`, in the source run's experiment: the source run keeps the test metrics of its training, and several
evaluations (other data, other checkpoints) stay side by side.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.arguments import key_values
from experiments.errors import UserError, instantiated
from experiments.legacy_config import upgraded
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
    values = key_values("eval", argv, KEYS)
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
    config = upgraded(OmegaConf.create(record["config"]))
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


def _checkpoint_model(source: Source, datamodule: Any) -> Any:
    """A checkpoint's weights in the run's network, with the preprocessing its recorded data config fits
    again (deterministically: the same split, the same training rows)."""
    from experiments.checkpoints import check_fits
    from experiments.models.mlp import network_from_config
    from experiments.models.module import ExperimentModule
    from experiments.tracking.pyfunc_model import TabularModel

    assert source.checkpoint is not None
    net = network_from_config(source.config.model, datamodule.input_dim, datamodule.num_outputs)
    module = ExperimentModule(net, **datamodule.target.training_settings())
    check_fits(source.checkpoint, module, source.origin)
    module.load_state_dict(source.checkpoint["state_dict"])
    return TabularModel(datamodule.preparation, module.net)


def trained_model(source: Source, datamodule: Any | None) -> Any:
    """The `TabularModel` evaluated: the run's logged one, or a checkpoint's weights."""
    if source.checkpoint is None:
        from experiments.tracking.pyfunc_model import load_logged_model

        assert source.run is not None
        return load_logged_model(source.uri, source.run.info.run_id)
    datamodule = datamodule or instantiated(source.config.data, _convert_="all")
    return _checkpoint_model(source, datamodule)


def csv_rows(model: Any, config: DictConfig, path: str, target: str | None) -> tuple[Any, Any, int]:
    """Features and encoded labels of a table's rows, prepared by the model's own pipeline (columns by
    name); rows without a label are left out, with a note."""
    from experiments.data.readers import read_table, recorded_reader_options
    from experiments.data.targets import rows_with_a_target

    name = target or model.preparation.target.name
    frame = read_table(path, setting="csv", **recorded_reader_options(config.data))
    where = f"CSV {Path(path).name!r}"
    model.preparation.check_columns(frame, where)  # a missing feature first: it is what renamed columns lose
    if name not in frame.columns:
        raise UserError(f"{where} has no label column {name!r}; name it with target=… (its columns are: "
                        f"{', '.join(map(str, frame.columns))}).")
    frame, dropped = rows_with_a_target(frame, name)
    if dropped:
        print(dropped, file=sys.stderr)
    if frame.empty:
        raise UserError(f"{where} has no row with a label in {name!r}.")
    x = model.preparation.features(frame, where)
    y = model.preparation.target.encode(frame[name].to_numpy(), where)
    return x, y, len(frame)


def evaluate(source: Source, csv: str | None, target: str | None) -> tuple[dict[str, float], str, int]:
    """Test metrics, a description of the data evaluated, and its number of rows."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import TensorDataset

    from experiments.console import quiet_lightning_warnings
    from experiments.data.loader import batch_loader
    from experiments.models.module import ExperimentModule, tested_metrics
    from experiments.sizing import choose_eval_batch_size, widest_layer

    quiet_lightning_warnings()
    cfg = source.config
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    if csv:  # the model's own pipeline prepares the rows: the training data need not be at hand
        model = trained_model(source, None)
        x, y, _ = csv_rows(model, cfg, csv, target)
        dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        data_label = f"csv {Path(csv).expanduser().resolve()}"
    else:
        datamodule = instantiated(cfg.data, _convert_="all")  # e.g. the recorded CSV is gone: one sentence
        if datamodule.arrays.sizes["test"] == 0:
            raise UserError("The run's data config has an empty test split (data.split.test=0); pass csv=… to evaluate.")
        model = trained_model(source, datamodule)
        dataset = datamodule.tensors("test")
        data_label = "test split"
    module = ExperimentModule(model.net, **model.preparation.target.training_settings(),
                              optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True))  # type: ignore[arg-type]
    rows = choose_eval_batch_size(cfg.data.get("eval_batch_size", "auto"),
                                  widest_layer(dataset.tensors[0].shape[1], cfg.model.get("hidden_dims") or []))
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
        from experiments.data.readers import table_file

        table_file(args["csv"], "csv")
    source = load_source(args)
    metrics, data_label, n_rows = evaluate(source, args.get("csv"), args.get("target"))
    eval_run_id, _ = log_evaluation(source, metrics, data_label, n_rows)
    print_metrics(metrics, source, data_label, eval_run_id)
    sys.stdout.flush()
    return 0
