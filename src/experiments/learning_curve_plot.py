"""The learning-curve PNG a run logs: matplotlib only, so a plotting worker process starts in a moment."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def curve_keys(metric: str) -> tuple[str, ...]:
    """The plot's lines: train and val loss, train and val `metric`."""
    return ("train/loss", "val/loss", f"train/{metric}", f"val/{metric}")


def log_learning_curve(client: Any, run_id: str, history: dict[str, dict[int, float]], metric: str,
                       filename: str, artifact_path: str) -> None:
    """Draw the plot in a temporary folder and attach it to the run (`client`: an MlflowClient)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="learning-curve-"))
    try:
        client.log_artifact(run_id, str(plot_learning_curve(history, metric, folder / filename)), artifact_path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def plot_learning_curve(history: dict[str, dict[int, float]], metric: str, path: Path) -> Path:
    """Two panels, loss and `metric`, each with the train and val line per epoch."""
    fig, axes = _figure(metric)
    for ax, name in zip(axes, ("loss", metric)):
        lines = [(split, sorted(series), series) for split in ("train", "val")
                 if (series := history.get(f"{split}/{name}"))]
        if [(line.get_label(), line.get_marker()) for line in ax.lines] == \
                [(split, _marker(epochs)) for split, epochs, _ in lines]:
            # The last plot's lines and legend (its handles show the markers): only the data is new.
            for line, (_, epochs, series) in zip(ax.lines, lines):
                line.set_data(epochs, [series[e] for e in epochs])
        else:
            for line in list(ax.lines):
                line.remove()
            ax.set_prop_cycle(None)  # each plot's lines in the same colours as on a new figure
            for split, epochs, series in lines:
                ax.plot(epochs, [series[e] for e in epochs], label=split, marker=_marker(epochs))
            ax.legend()
        ax.relim()
        ax.autoscale_view()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _marker(epochs: list[int]) -> str:
    return "." if len(epochs) < 30 else "None"


# One figure per metric, its lines replaced for every plot: a new figure's axes and ticks are about a third
# of a plot's time, and a population draws one plot per member (the same PNG as on a new figure, tested).
_FIGURES: dict[str, tuple[Any, Any]] = {}


def _figure(metric: str) -> tuple[Any, Any]:
    if metric in _FIGURES:
        return _FIGURES[metric]
    # A bare Figure on the Agg canvas with fixed margins: no pyplot state, and no `tight_layout`,
    # which draws the whole figure once more just to measure it (a third of the plot's time).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.15, top=0.86, wspace=0.25)
    for ax, name in zip(axes, ("loss", metric)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle("learning curve (train split measured in eval mode)", fontsize=10)
    _FIGURES[metric] = (fig, axes)
    return fig, axes
