"""Tables as users bring them, built inside the tests: shared by the unit and end-to-end tiers."""

from __future__ import annotations

import numpy as np
import pandas as pd


def messy_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """An index column, an ID, gaps, text, booleans, dates, a constant column and string labels."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "Unnamed: 0": np.arange(n),
        "customer_id": rng.permutation(n) + 10_000,
        "age": rng.integers(18, 80, n).astype(float),
        "colour": rng.choice(["red", "green", "blue"], n, p=[0.4, 0.3, 0.3]),
        "member": rng.choice([True, False], n),
        "signup": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "country": "NL",
        "income": rng.normal(50, 10, n),
    })
    table.loc[::9, "age"] = np.nan
    table.loc[::11, "colour"] = None
    table.loc[[4, 8, 16], "colour"] = "violet"  # rare: grouped with other rare ones
    signal = table.age.fillna(45) + 15 * (table.colour == "red") + 8 * table.member + rng.normal(0, 4, n)
    table["label"] = np.where(signal > 58, "buyer", "browser")
    return table
