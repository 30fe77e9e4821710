"""End-of-sweep summary: optimization_results.yaml, optuna_summary.json and PNG plots in the sweep dir."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from .summary_files import (
    HISTORY_PNG,
    IMPORTANCES_PNG,
    PARETO_PNG,
    RESULTS_YAML,
    SUMMARY_JSON,
    optuna_summary_files,
)

log = logging.getLogger(__name__)


def write_summary(study: optuna.Study, sweep_dir: str | Path, invocation: dict[str, Any]) -> list[Path]:
    """Write the summary files for the whole study (all workers, all resumes); return their paths."""
    root = Path(sweep_dir)
    root.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    multi = len(study.directions) > 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "n_trials": len(trials),
        "trials_by_state": dict(Counter(t.state.name for t in trials)),
        "this_invocation": invocation,
    }
    if multi:
        summary["pareto_front"] = [_trial_dict(t) for t in (study.best_trials if complete else [])]
    else:
        summary["best"] = _trial_dict(study.best_trial) if complete else None
    summary["param_importances"], summary["param_importances_error"] = _importances(study, len(complete))

    _atomic_write(root / RESULTS_YAML, OmegaConf.to_yaml(OmegaConf.create(_results_yaml(summary))))
    _atomic_write(root / SUMMARY_JSON, json.dumps(_jsonable(summary), indent=2) + "\n")
    _plots(study, root, multi, summary["param_importances"])
    return optuna_summary_files(root)


def _trial_dict(t: FrozenTrial) -> dict[str, Any]:
    out: dict[str, Any] = {"number": t.number, "params": t.params}
    if t.values is not None and len(t.values) > 1:
        out["values"] = list(t.values)
    else:
        out["value"] = t.value
    return out


def _results_yaml(summary: dict[str, Any]) -> dict[str, Any]:
    # Same shape as hydra-optuna-sweeper's file, so existing readers keep working.
    if "pareto_front" in summary:
        return {"name": "optuna", "solutions": summary["pareto_front"]}
    best = summary["best"] or {}
    return {"name": "optuna", "best_params": best.get("params"), "best_value": best.get("value")}


def _importances(study: optuna.Study, n_complete: int) -> tuple[Any, str | None]:
    """Importances per objective; None with the reason when they cannot be computed (too few trials,
    a single parameter value, ...) — a summary must never fail the sweep."""
    if n_complete < 2:
        return None, "needs at least 2 complete trials"
    targets: dict[str, Callable[[FrozenTrial], float] | None]
    if len(study.directions) == 1:
        targets = {"value": None}
    else:
        targets = {f"objective_{i}": (lambda t, i=i: t.values[i]) for i in range(len(study.directions))}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = {
                name: optuna.importance.get_param_importances(study, target=target)
                for name, target in targets.items()
            }
    except Exception as e:  # noqa: BLE001 — Optuna raises various types for degenerate studies
        return None, f"{type(e).__name__}: {e}"
    return result.get("value", result), None


def _plots(study: optuna.Study, root: Path, multi: bool, importances: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: sweeps run on servers and in CI
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    jobs: list[tuple[str, Callable[[], Any]]] = []
    if multi:
        if len(study.directions) in (2, 3):
            jobs.append((PARETO_PNG, lambda: ovm.plot_pareto_front(study)))
    else:
        jobs.append((HISTORY_PNG, lambda: ovm.plot_optimization_history(study)))
        if importances:
            jobs.append((IMPORTANCES_PNG, lambda: ovm.plot_param_importances(study)))
    for name, draw in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning of optuna.visualization.matplotlib
                ax = draw()
            figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            figure.tight_layout()
            figure.savefig(root / name, dpi=100)
            plt.close(figure)
        except Exception as e:  # noqa: BLE001 — a plot is optional; the sweep result is not
            log.warning("Could not draw %s: %s", name, e)


def _jsonable(value: Any) -> Any:
    """JSON without NaN/inf (not valid JSON): those become null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _atomic_write(path: Path, text: str) -> None:
    # Two workers sharing a sweep dir may finish together; readers never see a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
