"""Everything fitted on the training split that turns raw rows into the net's inputs and back.

A `TablePreparation` is what the logged model carries besides the network: the column plan, the
fitted scikit-learn preprocessing, the target's encoding and the raw columns' types (for the model's
signature). Rows are matched by column name only, never by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.data.columns import ColumnPlan
from experiments.data.targets import TargetEncoding
from experiments.errors import UserError


@dataclass
class TablePreparation:
    plan: ColumnPlan
    preprocessor: Any  # a fitted sklearn ColumnTransformer
    target: TargetEncoding
    dtypes: dict[str, str]  # raw feature column → pandas dtype name, as read from the training table
    impute: bool = True

    @property
    def columns(self) -> list[str]:
        return self.plan.features

    @property
    def output_names(self) -> list[str]:
        """The net's input features after preprocessing (e.g. `colour_red`, `signup_year`)."""
        return [str(name) for name in self.preprocessor.get_feature_names_out()]

    def check_columns(self, frame: Any, where: str) -> None:
        """Refuse rows that lack a column the model reads (naming them), or hold gaps it cannot fill."""
        present = {str(c) for c in frame.columns}
        missing = [name for name in self.columns if name not in present]
        if missing:
            raise UserError(f"{where} lacks the column{'s' if len(missing) > 1 else ''} the model reads: "
                            f"{', '.join(missing)} (columns are matched by name).")
        if not self.impute:
            refuse_empty_cells(frame[self.columns], where)

    def features(self, frame: Any, where: str = "The data") -> np.ndarray:
        """Raw rows (any column order, extra columns ignored) → float32 inputs of the net."""
        self.check_columns(frame, where)
        selected = _as_numbers(frame[self.columns], self.plan.columns("numeric"), where)
        return np.ascontiguousarray(self.preprocessor.transform(selected), dtype=np.float32)


def refuse_empty_cells(frame: Any, where: str) -> None:
    counts = frame.isna().sum()
    gaps = {str(name): int(n) for name, n in counts.items() if n}
    if gaps:
        listed = ", ".join(f"{name} ({n})" for name, n in gaps.items())
        raise UserError(f"{where} has empty cells in {listed}, and data.impute=false; fill them, or let the "
                        "pipeline impute them (data.impute=true).")


def _as_numbers(frame: Any, numeric: list[str], where: str) -> Any:
    """Numeric columns that arrive as text (e.g. a JSON request) become numbers; a cell that is not one
    is refused rather than read as a gap."""
    import pandas as pd

    text = [name for name in numeric if not pd.api.types.is_numeric_dtype(frame[name].dtype)]
    if not text:
        return frame
    frame = frame.copy()
    for name in text:
        converted = pd.to_numeric(frame[name], errors="coerce")
        wrong = converted.isna() & frame[name].notna()
        if wrong.any():
            raise UserError(f"{where} has values that are not numbers in column {name!r} "
                            f"(e.g. {frame[name][wrong].iloc[0]!r}); the model was trained on numbers there.")
        frame[name] = converted
    return frame
