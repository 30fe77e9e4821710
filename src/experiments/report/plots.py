"""The report's PNGs: validation curves per fix (mean with a band over seeds) and the gap per fix."""

from __future__ import annotations

import math
from pathlib import Path

from experiments.report.runs import RunRecord
from experiments.report.table import GroupRow


def pyplot_agg():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_band(records: list[RunRecord], key: str) -> tuple[list[int], list[float], list[float]]:
    """Per epoch: the mean over the seeds that reached it and its ±1 std (0 with one seed)."""
    by_epoch: dict[int, list[float]] = {}
    for record in records:
        for epoch, value in record.curves.get(key, {}).items():
            by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    means, stds = [], []
    for epoch in epochs:
        values = by_epoch[epoch]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        means.append(mean)
        stds.append(math.sqrt(var))
    return epochs, means, stds


def plot_val_curves(rows: list[GroupRow], baseline: str | None, path: Path, key: str = "val/loss",
                    train_key: str = "train/loss") -> Path:
    """One small panel per fix: its val curve (solid) and train curve (dashed), the baseline's val curve
    in grey behind it, each a mean over seeds with a ±1 std band."""
    plt = pyplot_agg()
    base = next((r for r in rows if r.group == baseline), None)
    cols = min(4, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.5 * nrows), dpi=90, sharex=True, sharey=True,
                             squeeze=False)
    for ax, row in zip(axes.flat, rows):
        if base is not None and row is not base:
            epochs, mean, std = mean_band(base.records, key)
            ax.plot(epochs, mean, color="0.6", lw=1, label=f"{baseline} val")
        for curve, style in ((key, "-"), (train_key, "--")):
            epochs, mean, std = mean_band(row.records, curve)
            if not epochs:
                continue
            line, = ax.plot(epochs, mean, style, color="C0" if curve == key else "C1", lw=1.4,
                            label=f"{curve.split('/')[0]} (this fix)")
            ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(f"{row.group} (n={len(row.records)})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(key.split("/", 1)[1])
    handles, labels = axes.flat[min(1, len(rows) - 1)].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, ncol=3)
    fig.suptitle(f"{key} per fix: mean over seeds ± 1 std (train dashed)", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_gap_bars(rows: list[GroupRow], baseline: str | None, path: Path, key: str = "final_gap_loss",
                  label: str = "final gap: val loss − train loss") -> Path:
    """Horizontal bars of the mean gap per fix with 95% CI error bars; the baseline's mean as a line."""
    plt = pyplot_agg()
    ordered = list(reversed(rows))  # the table's first row on top
    means = [r.values[key].mean for r in ordered]
    errors = [r.values[key].half_width if r.values[key].n >= 2 else 0.0 for r in ordered]
    colors = ["0.55" if r.group == baseline else "C0" for r in ordered]
    fig, ax = plt.subplots(figsize=(6.4, 0.38 * len(rows) + 1.2), dpi=90)
    ax.barh([r.group for r in ordered], means, xerr=errors, color=colors, capsize=3)
    base = next((r for r in rows if r.group == baseline), None)
    if base is not None:
        ax.axvline(base.values[key].mean, color="0.3", ls=":", lw=1)
    ax.set_xlabel(f"{label} (mean, 95% CI over seeds)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
