"""`experiments predict`: a run's logged model on the rows of a table, written beside them.

    experiments predict run_id=RUN_ID input=new.csv [output=predictions.parquet] [tracking_uri=…]

The rows go through the run's logged pipeline (the same model `mlflow.pyfunc.load_model` returns):
columns matched by name only, any order, extra columns kept in the output but not read. The output
holds the input's rows with `prediction` (a label in its original values, or a value in the target's
units) and, for classes, one `probability_<label>` column each; CSV or Parquet by its extension
(default: outputs/predictions/<input>-<run>.csv).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from experiments.arguments import key_values
from experiments.errors import UserError
from experiments.paths import project_root

KEYS = ("run_id", "input", "output", "tracking_uri")
_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".tsv", ".txt", ".gz", ".bz2", ".xz", ".zip")


def parse_args(argv: list[str]) -> dict[str, str]:
    values = key_values("predict", argv, KEYS)
    missing = [key for key in ("run_id", "input") if key not in values]
    if missing:
        raise UserError(f"experiments predict needs {' and '.join(f'{k}=…' for k in missing)}, "
                        "e.g. experiments predict run_id=RUN_ID input=new.csv.")
    return values


def output_path(args: dict[str, str], run_id: str) -> Path:
    if "output" in args:
        path = Path(args["output"]).expanduser()
        if not path.name.lower().endswith(_PARQUET + _CSV):
            raise UserError(f"output={args['output']}: name a .csv (optionally compressed, e.g. .csv.gz) or "
                            ".parquet file.")
        if path.is_dir():
            raise UserError(f"output={args['output']}: that is a directory; name a .csv or .parquet file.")
        return path
    stem = Path(args["input"]).name.split(".")[0]
    return project_root() / "outputs" / "predictions" / f"{stem}-{run_id[:8]}.csv"


def write_table(frame: Any, path: Path) -> None:
    """Written to a temporary name first: an interrupted write leaves no half a file under the real one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    if path.name.lower().endswith(_PARQUET):
        frame.to_parquet(partial, index=False)
    else:
        frame.to_csv(partial, index=False, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                     compression={"method": _compression(path)} if _compression(path) else None)
    partial.replace(path)


def _compression(path: Path) -> str | None:
    return {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}.get(path.suffix.lower())


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    args = parse_args(argv)
    from experiments.data.readers import read_table, recorded_reader_options, table_file

    table_file(args["input"], "input")  # a mistyped path is refused before the model loads
    from experiments.evaluate import store_uri
    from experiments.tracking.lookup import find_trained_run, open_store, recorded_config
    from experiments.tracking.pyfunc_model import load_logged_model

    uri = store_uri(args.get("tracking_uri"))
    client = open_store(uri, "predict")
    run = find_trained_run(client, args["run_id"], uri, "predict")
    run_id = run.info.run_id
    destination = output_path(args, run_id)
    model = load_logged_model(uri, run_id)
    frame = read_table(args["input"], setting="input", **recorded_reader_options(recorded_config(client, run).data))
    where = f"input {Path(args['input']).name!r}"
    predictions = model.decode(model.outputs(frame, where))
    kept = frame.drop(columns=[c for c in predictions.columns if c in frame.columns]).reset_index(drop=True)
    import pandas as pd

    write_table(pd.concat([kept, predictions], axis=1), destination)
    print(f"Predicted {len(frame)} rows with the model of run {run_id}: {destination}")
    sys.stdout.flush()
    return 0
