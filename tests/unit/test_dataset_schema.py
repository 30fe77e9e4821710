"""The MLflow dataset schema is inferred from a sample yet names the same columns, types and gaps."""

import numpy as np
import pandas as pd
from mlflow.types.utils import _infer_schema

from experiments.tracking.dataset import SCHEMA_SAMPLE_ROWS, schema_sample


def test_sample_schema_equals_the_whole_tables() -> None:
    rows = SCHEMA_SAMPLE_ROWS * 3
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "x": rng.normal(size=rows),
        "late_gap": rng.normal(size=rows),
        "city": rng.choice(["a", "b"], size=rows).astype(object),
        "count": rng.integers(0, 9, size=rows),
        "flag": rng.random(rows) > 0.5,
    })
    frame.loc[rows - 5, "late_gap"] = np.nan  # a gap only far past the first rows
    frame.loc[rows - 2, "city"] = None
    sample = schema_sample(frame)
    assert len(sample) < rows
    assert _infer_schema(sample).to_dict() == _infer_schema(frame).to_dict()
    required = {spec["name"]: spec["required"] for spec in _infer_schema(sample).to_dict()}
    assert required == {"x": True, "late_gap": False, "city": False, "count": True, "flag": True}
