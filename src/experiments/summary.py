"""The short end-of-run summary: final metrics, the run's id and name, where to see it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from experiments.tracking.store import ui_url


def print_summary(metrics: dict[str, float], logger: Any | None, run_name: str) -> None:
    console = Console(stderr=False)
    table = Table(title=f"Run {run_name}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.startswith(("train/", "val/", "test/", "gap/")):
            table.add_row(key, f"{metrics[key]:.4f}")
    console.print(table)
    if logger is not None:
        console.print(f"MLflow run: [bold]{logger.run_id}[/bold]  (experiment {logger.experiment_id})")
        url = ui_url(logger._tracking_uri, logger.experiment_id, logger.run_id)
        # A tracking server serves its own UI; a local store needs `experiments ui` started first.
        how = "" if logger._tracking_uri.startswith("http") else "experiments ui   →  "
        console.print(f"Open it:    {how}{url}", soft_wrap=True)  # one line, whole URL, to copy or click
