"""Names of the files the sweeper writes into the sweep dir; import-light for other Hydra callbacks."""

from __future__ import annotations

from pathlib import Path

RESULTS_YAML = "optimization_results.yaml"
SUMMARY_JSON = "optuna_summary.json"
HISTORY_PNG = "optuna_history.png"
IMPORTANCES_PNG = "optuna_importances.png"
PARETO_PNG = "optuna_pareto_front.png"

SUMMARY_FILE_NAMES: tuple[str, ...] = (RESULTS_YAML, SUMMARY_JSON, HISTORY_PNG, IMPORTANCES_PNG, PARETO_PNG)


def optuna_summary_files(sweep_dir: str | Path) -> list[Path]:
    """The summary files of an Optuna sweep that exist in `sweep_dir` (e.g. to log as MLflow artifacts).

    Empty when the sweep used another sweeper or wrote nothing yet; plots may be missing when Optuna
    could not draw them (e.g. no complete trial).
    """
    root = Path(sweep_dir)
    return [root / name for name in SUMMARY_FILE_NAMES if (root / name).is_file()]
