"""Reading a user's table: separators, decimals, compression, Parquet, and the ways a file is not a table."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from experiments.data.datamodule import TabularDataModule
from experiments.data.readers import read_table
from experiments.errors import UserError

TABLE = pd.DataFrame({"height": [1.5, 2.25, 3.0, 4.75], "colour": ["red", "blue", "red", "green"],
                      "label": ["a", "b", "a", "b"]})


def _same(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(TABLE.columns)
    assert frame.height.tolist() == TABLE.height.tolist() and frame.colour.tolist() == TABLE.colour.tolist()


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_separator_is_detected(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "t.csv"
    TABLE.to_csv(path, sep=sep, index=False)
    _same(read_table(str(path)))


def test_semicolon_files_with_decimal_commas_read_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "european.csv"
    TABLE.to_csv(path, sep=";", decimal=",", index=False)
    _same(read_table(str(path)))
    assert not pd.api.types.is_numeric_dtype(read_table(str(path), sep=";", decimal=".").height)  # told otherwise


def test_compressed_csv_parquet_encoding_and_na_values(tmp_path: Path) -> None:
    zipped = tmp_path / "t.csv.gz"
    with gzip.open(zipped, "wt") as handle:
        TABLE.to_csv(handle, sep=";", index=False)
    _same(read_table(str(zipped)))
    parquet = tmp_path / "t.parquet"
    TABLE.to_parquet(parquet)
    _same(read_table(str(parquet)))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,label\ncafé,a\nthé,b\n".encode("latin-1"))
    assert read_table(str(latin), encoding="latin-1").name.tolist() == ["café", "thé"]
    with pytest.raises(UserError, match="it is not utf-8 text \\(set data.options.encoding=…"):
        read_table(str(latin))
    marked = tmp_path / "marked.csv"
    marked.write_text("x,label\n1,a\n?,b\n3,a\n")
    assert read_table(str(marked), na_values=["?"]).x.isna().tolist() == [False, True, False]


def test_files_that_are_not_tables_are_one_sentence_each(tmp_path: Path) -> None:
    empty, header, binary = tmp_path / "empty.csv", tmp_path / "header.csv", tmp_path / "image.csv"
    empty.write_text("")
    header.write_text("a,b,label\n")
    binary.write_bytes(bytes(range(256)) * 4)
    cases = {empty: "the file is empty", header: "'header.csv' has a header (3 columns) but no rows",
             binary: "Could not read 'image.csv' as CSV: it is not utf-8 text", tmp_path: "that is a directory"}
    for path, message in cases.items():
        with pytest.raises(UserError, match=re.escape(message)):
            read_table(str(path))


def test_a_numeric_table_is_scaled_exactly_as_a_standard_scaler_on_the_training_rows() -> None:
    """Numeric-only data meets the same preprocessing as before the pipeline: StandardScaler fitted on train."""
    dm = TabularDataModule("wine", {})
    raw = dm.frame[dm.preparation.columns].to_numpy()
    scaler = StandardScaler().fit(raw[dm.rows["train"]])
    for split, rows in dm.rows.items():
        expected = scaler.transform(raw[rows]).astype(np.float32)
        assert np.allclose(getattr(dm.arrays, f"x_{split}"), expected, atol=1e-6)
