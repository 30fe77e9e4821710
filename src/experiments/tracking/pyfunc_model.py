"""The model a run hands over: preprocessing + network + labels as one MLflow pyfunc model.

`mlflow.pyfunc.load_model(uri).predict(raw_rows)` takes rows as read from the file (any column order,
extra columns ignored, gaps where training imputed them) and returns the predicted label in its
original values plus one probability column per class, or the value in the target's own units. The
bare network stays reachable for research: `….unwrap_python_model().net`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from experiments.data.preparation import TablePreparation

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"


class TabularModel(PythonModel):
    def __init__(self, preparation: TablePreparation, net: Any) -> None:
        self.preparation = preparation
        self.net = net.eval().cpu()

    def outputs(self, frame: Any, where: str = "The input") -> Any:
        """The net's raw outputs for raw rows (columns matched by name)."""
        import torch

        x = torch.from_numpy(self.preparation.features(frame, where))
        with torch.no_grad():
            return self.net(x)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # `pd.DataFrame` is a hint MLflow accepts (it validates against the signature logged with the model).
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.decode(self.outputs(frame))

    def decode(self, output: Any) -> Any:
        """Raw outputs → a DataFrame of `prediction` (original labels or units) and class probabilities."""
        from experiments.models.tasks import predict

        target = self.preparation.target
        values = predict(output, target.task).numpy().astype(np.float64)
        if target.task == "regression":
            return pd.DataFrame({PREDICTION: values * target.std + target.mean})
        if target.task == "binary":
            values = np.column_stack([1.0 - values, values])
        labels = np.asarray(target.classes, dtype=object)[values.argmax(axis=1)]
        frame = pd.DataFrame({PREDICTION: pd.Series(labels).infer_objects()})
        for index, label in enumerate(target.classes):
            frame[f"{PROBABILITY_PREFIX}{label}"] = values[:, index]
        return frame


def signature(preparation: TablePreparation) -> Any:
    """Raw columns in (see `input_schema`); `prediction` and one probability column per class out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    target = preparation.target
    outputs = [ColSpec(_label_type(target.classes) if target.task != "regression" else "double", PREDICTION)]
    outputs += [ColSpec("double", f"{PROBABILITY_PREFIX}{label}") for label in target.classes]
    return ModelSignature(inputs=input_schema(preparation), outputs=Schema(outputs))


def _label_type(classes: tuple[Any, ...]) -> str:
    if all(isinstance(c, (bool, np.bool_)) for c in classes):
        return "boolean"
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return "long"
    if all(isinstance(c, (int, float, np.number)) for c in classes):
        return "double"
    return "string"


def load_logged_model(uri: str, run_id: str) -> Any:
    """The `TabularModel` a run logged, or one sentence on why there is none."""
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException

    from experiments.errors import UserError

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # download progress and notes are not news here
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    except (MlflowException, OSError):
        raise UserError(f"MLflow run {run_id} has no logged model (it trained with logger.log_model=false); "
                        "use one of its checkpoints with ckpt_path=… instead.") from None
    finally:
        mlflow.set_tracking_uri(previous)
    try:
        model = loaded.unwrap_python_model()
    except MlflowException:
        model = None
    if not isinstance(model, TabularModel):
        raise UserError(f"MLflow run {run_id} logged the network alone (an older version of experiments), without "
                        "its preprocessing; use one of its checkpoints with ckpt_path=… instead.")
    return model


def input_schema(preparation: TablePreparation) -> Any:
    """The raw columns the model reads, each required, by name. Their values are typed `Any`: MLflow's
    own enforcement refuses an int64 column where the training table had floats (a gap makes pandas
    read integers as floats), so the pipeline converts and checks values itself; the training table's
    column types are in the model's metadata and the run's dataset schema."""
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return Schema([ColSpec(AnyType(), name) for name in preparation.columns])
