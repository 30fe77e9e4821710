"""`experiments reproduce RUN_ID`: rerun a past run from what it recorded, and show that it matches.

The rerun trains the run's recorded config (its `config/config.yaml` artifact) into a fresh run dir
and a new MLflow run tagged `reproduces=RUN_ID`, then compares the final metrics of both runs.
Before training it checks what else decides the numbers — code, package versions, data — and warns
about each difference; `--strict` refuses to train when one differs.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError
from experiments.paths import project_root
from experiments.tracking.lookup import find_trained_run, open_store, recorded_config, recorded_diff
from experiments.tracking.store import resolve_tracking_uri

REPRODUCES_TAG = "reproduces"
COMPARED_PREFIXES = ("train/", "val/", "test/", "gap/")
DEFAULT_TOLERANCE = 1e-6


def difference(original: float | None, reproduced: float | None) -> float:
    """Absolute difference; a metric only one run has, or NaN on one side only, differs infinitely."""
    if original is None or reproduced is None:
        return math.inf
    if math.isnan(original) and math.isnan(reproduced):
        return 0.0
    diff = abs(original - reproduced)
    return math.inf if math.isnan(diff) else diff


@dataclass(frozen=True)
class Comparison:
    rows: list[tuple[str, float | None, float | None]]  # metric, original, reproduced
    tolerance: float

    @property
    def largest(self) -> tuple[str, float]:
        """The metric with the largest difference, and that difference."""
        if not self.rows:
            return "", 0.0
        name, original, reproduced = max(self.rows, key=lambda row: difference(row[1], row[2]))
        return name, difference(original, reproduced)

    @property
    def verdict(self) -> str:
        if not self.rows:
            return "differs"  # nothing to compare is no evidence of a match
        if all(difference(o, r) == 0.0 for _, o, r in self.rows):
            return "identical"
        return "within tolerance" if self.largest[1] <= self.tolerance else "differs"


def compare_metrics(original: dict[str, float], reproduced: dict[str, float], tolerance: float) -> Comparison:
    names = sorted(k for k in set(original) | set(reproduced) if k.startswith(COMPARED_PREFIXES))
    return Comparison([(k, original.get(k), reproduced.get(k)) for k in names], tolerance)


def _reroot(value: Any, old: str, new: str) -> Any:
    """Every path under the recorded run dir moves to the new run dir (checkpoints, root dir, …)."""
    if isinstance(value, dict):
        return {k: _reroot(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_reroot(v, old, new) for v in value]
    if isinstance(value, str) and old and (value == old or value.startswith(old + "/")):
        return new + value[len(old):]
    return value


def reproduction_config(recorded: DictConfig, run: Any, uri: str, output_dir: Path) -> DictConfig:
    plain = OmegaConf.to_container(recorded, resolve=True)
    assert isinstance(plain, dict)
    old_run_dir = str(plain.get("paths", {}).get("run_dir", ""))
    run_dir = output_dir / "runs" / datetime.now().strftime("%Y-%m-%d") / datetime.now().strftime("%H-%M-%S-%f")
    plain = _reroot(plain, old_run_dir, str(run_dir))
    cfg = OmegaConf.create(plain)
    OmegaConf.set_struct(cfg, False)
    cfg.paths.output_dir = str(output_dir)
    cfg.paths.run_dir = str(run_dir)
    cfg.resume = None
    cfg.ckpt_path = None
    cfg.logger.run_id = None
    cfg.logger.tracking_uri = uri
    cfg.logger.run_name = f"{run.info.run_name}-reproduced"
    cfg.tags = {**(plain.get("tags") or {}), REPRODUCES_TAG: run.info.run_id}
    return cfg


def _output_dir(requested: str | None, recorded: DictConfig) -> Path:
    if requested:
        return Path(requested).expanduser().resolve()
    recorded_dir = OmegaConf.select(recorded, "paths.output_dir", default=None)
    if recorded_dir and Path(recorded_dir).is_dir():
        return Path(recorded_dir)
    return project_root() / "outputs"


def _data_fingerprint(cfg: DictConfig) -> str:
    from experiments.errors import instantiated

    return str(instantiated(cfg.data, _convert_="all").fingerprint)


def print_comparison(comparison: Comparison, run: Any, new_run_id: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)  # ids and paths stay whole, to copy and paste
    table = Table(title=f"reproduce {run.info.run_name}", header_style="bold")
    table.add_column("metric")
    table.add_column(f"original {run.info.run_id[:8]}", justify="right")
    table.add_column(f"reproduced {new_run_id[:8]}", justify="right")
    table.add_column("difference", justify="right")
    for name, original, reproduced in comparison.rows:
        diff = "missing" if original is None or reproduced is None else f"{reproduced - original:+.3g}"
        if original == reproduced:
            diff = "0"
        table.add_row(name, "—" if original is None else f"{original:.6g}", "—" if reproduced is None else
                      f"{reproduced:.6g}", diff)
    console.print(table)
    verdict = comparison.verdict
    worst, diff = comparison.largest
    if verdict == "identical":
        console.print(f"[bold green]identical[/]: all {len(comparison.rows)} final metrics match bit for bit.")
    elif verdict == "within tolerance":
        console.print(f"[bold yellow]within tolerance[/] {comparison.tolerance:g}: largest difference {diff:.3g} "
                      f"({worst}).")
    else:
        console.print(f"[bold red]differs[/]: largest difference {diff:.3g} ({worst}), above the tolerance "
                      f"{comparison.tolerance:g}.")


def _new_run_id(client: Any, experiment_id: str, run_id: str) -> Any:
    runs = client.search_runs([experiment_id], filter_string=f"tags.{REPRODUCES_TAG} = '{run_id}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise UserError(f"The reproduction of run {run_id} logged no MLflow run; see the training output above.")
    return runs[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="experiments reproduce",
        description="Rerun a tracked run from its recorded config and compare the final metrics.",
    )
    parser.add_argument("run_id", help="the MLflow run to reproduce")
    parser.add_argument("--strict", action="store_true",
                        help="refuse (train nothing) when the code, a package version or the data differ")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"largest absolute metric difference still called a match (default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or outputs/mlflow.db")
    parser.add_argument("--output-dir", default=None,
                        help="where the new run dir goes (default: the original's output dir, else outputs/)")
    args = parser.parse_args(argv)
    if not args.run_id.strip():
        raise UserError("The run id is empty; give the MLflow run to reproduce, e.g. experiments reproduce RUN_ID.")
    if args.tolerance < 0 or math.isnan(args.tolerance):
        raise UserError(f"--tolerance must be a number >= 0, got {args.tolerance}.")

    uri = resolve_tracking_uri(args.tracking_uri, project_root() / "outputs")
    client = open_store(uri)
    run = find_trained_run(client, args.run_id, uri, "reproduce")
    recorded = recorded_config(client, run)
    cfg = reproduction_config(recorded, run, uri, _output_dir(args.output_dir, recorded))

    from experiments.tracking.drift import code_drift, data_drift, environment_drift

    tags = run.data.tags
    drifts = code_drift(tags, recorded_diff(client, run)) + environment_drift(tags)
    drifts += data_drift(tags, _data_fingerprint(cfg))
    for drift in drifts:
        print(f"warning: {drift.describe()}" + ("" if drift.blocking else " (informational)"), file=sys.stderr)
    blocking = [d for d in drifts if d.blocking]
    if args.strict and blocking:
        raise UserError(
            f"--strict: not reproducing run {run.info.run_id}, because its {', '.join(d.what for d in blocking)} "
            "differ from now; rerun without --strict to train anyway."
        )

    from experiments.errors import TrainingFailed
    from experiments.train import train

    print(f"Reproducing run {run.info.run_name} ({run.info.run_id}) into {cfg.paths.run_dir}", flush=True)
    try:
        train(cfg)
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    new_run = _new_run_id(client, run.info.experiment_id, run.info.run_id)
    comparison = compare_metrics(run.data.metrics, new_run.data.metrics, args.tolerance)
    worst, diff = comparison.largest
    client.set_tag(new_run.info.run_id, "reproduce.verdict", comparison.verdict)
    client.set_tag(new_run.info.run_id, "reproduce.largest_difference", f"{diff:.6g} ({worst})" if worst else "0")
    print_comparison(comparison, run, new_run.info.run_id)
    return 0 if comparison.verdict != "differs" else 1
