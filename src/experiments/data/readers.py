"""Reading a user's table: CSV (separator detected or set, compressed or not) or Parquet.

Every way a file can fail to be a table is one sentence that names the file and the format tried.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.errors import UserError

# The options of `data=csv` that the reader takes; the column options are data/columns.py's.
READER_KEYS = ("path", "sep", "encoding", "na_values", "decimal")
_SEPARATORS = ",;\t|"
_PARQUET_MAGIC = b"PAR1"
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


def table_file(path: str, setting: str = "data.options.path") -> Path:
    """The file `path` names, refused in the words the user typed (`setting=path`) unless it is one."""
    file = Path(str(path)).expanduser()
    if file.is_dir():
        raise UserError(f"{setting}={path}: that is a directory, not a CSV or Parquet file.")
    if not file.is_file():
        raise UserError(f"{setting}={path}: file {str(file)!r} does not exist.")
    return file


def _is_parquet(file: Path) -> bool:
    with file.open("rb") as handle:
        return handle.read(4) == _PARQUET_MAGIC


def _head_bytes(file: Path, size: int = 65536) -> bytes:
    """The first bytes of the (possibly compressed) file, decompressed."""
    suffix = file.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            if not names:
                return b""
            with archive.open(names[0]) as member:
                return member.read(size)
    opener = _OPENERS.get(suffix, open)
    with opener(file, "rb") as handle:  # type: ignore[operator]
        return handle.read(size)


def _detect_separator(sample: str) -> str:
    lines = [line for line in sample.splitlines()[:20] if line.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_SEPARATORS).delimiter
    except csv.Error:  # one column, or no consistent separator: count in the header
        counts = {sep: lines[0].count(sep) for sep in _SEPARATORS}
        best = max(counts, key=counts.__getitem__)
        return best if counts[best] else ","


def _detect_decimal(sample: str, sep: str) -> str:
    """`,` when the file separates fields by something else and its numbers look like `1,5`."""
    if sep == ",":
        return "."
    fields = [field.strip().strip('"') for line in sample.splitlines()[1:20] for field in line.split(sep)]
    return "," if any(_DECIMAL_COMMA.match(field) for field in fields) else "."


def read_table(path: str, sep: str = "auto", encoding: str = "utf-8", na_values: Sequence[str] | str | None = None,
               decimal: str = "auto", setting: str = "data.options.path") -> Any:
    """The file as a pandas DataFrame with at least one row; Parquet by its magic bytes, else CSV."""
    import pandas as pd

    file = table_file(path, setting)
    if file.stat().st_size == 0:
        raise UserError(f"{setting}={path}: the file is empty.")
    if _is_parquet(file):
        try:
            frame = pd.read_parquet(file)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types; the user needs the file and why
            raise UserError(f"Could not read {file.name!r} as Parquet: {err}.") from None
        return _with_rows(frame, file, setting, path)
    try:
        sample = _head_bytes(file).decode(encoding, errors="strict" if file.suffix.lower() not in _OPENERS else "ignore")
    except UnicodeDecodeError:
        raise UserError(
            f"Could not read {file.name!r} as CSV: it is not {encoding} text (set data.options.encoding=…, "
            "e.g. latin-1), nor a Parquet file."
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as err:
        raise UserError(f"Could not read {file.name!r} as compressed CSV: {err}.") from None
    if not sample.strip():
        raise UserError(f"{setting}={path}: the file is empty.")
    separator = _detect_separator(sample) if sep == "auto" else sep
    point = _detect_decimal(sample, separator) if decimal == "auto" else decimal
    try:
        frame = pd.read_csv(file, sep=separator, encoding=encoding, decimal=point,
                            na_values=[na_values] if isinstance(na_values, str) else na_values)
    except UnicodeDecodeError:
        raise UserError(f"Could not read {file.name!r} as CSV: it is not {encoding} text "
                        "(set data.options.encoding=…, e.g. latin-1).") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{setting}={path}: the file is empty.") from None
    except Exception as err:  # noqa: BLE001 - pandas raises many parser types; the user needs the file and why
        raise UserError(f"Could not read {file.name!r} as CSV (separator {separator!r}): "
                        f"{str(err).strip().rstrip('.')}.") from None
    return _with_rows(frame, file, setting, path)


def _with_rows(frame: Any, file: Path, setting: str, path: str) -> Any:
    if len(frame.columns) == 0:
        raise UserError(f"{setting}={path}: the file is empty.")
    if len(frame) == 0:
        raise UserError(f"{setting}={path}: {file.name!r} has a header ({len(frame.columns)} columns) but no rows.")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def recorded_reader_options(data_cfg: Any) -> dict[str, Any]:
    """How the run read its own table (separator, encoding, …), for reading other tables the same way."""
    options = dict(data_cfg.get("options") or {}) if data_cfg.get("dataset") == "csv" else {}
    return {key: options[key] for key in READER_KEYS if key != "path" and options.get(key) is not None}
