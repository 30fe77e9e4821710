"""The report as a Rich table on the terminal, a Markdown page and CSV files (per fix and per run)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from experiments.report.stats import CONFIDENCE, Estimate
from experiments.report.table import GroupRow, Quantity, verdict

# Columns of the printed / Markdown table; the CSV holds every quantity and difference.
SHOWN = ("best_val_loss", "best_epoch", "final_val_loss", "final_val_{main}", "final_gap_loss", "final_gap_{main}")
SHOWN_VS_BASELINE = ("final_val_loss", "final_gap_loss")


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}".replace("-", "−")


def cell(e: Estimate, digits: int = 3, sep: str = " ") -> str:
    """`mean ± std [ci_low, ci_high]`; just the mean for a single seed. `sep` goes before the interval."""
    if e.n == 0:
        return "n/a"
    if e.n == 1:
        return _num(e.mean, digits)
    return f"{_num(e.mean, digits)} ± {_num(e.std, digits)}{sep}[{_num(e.ci_low, digits)}, {_num(e.ci_high, digits)}]"


def diff_cell(row: GroupRow, q: Quantity, sep: str = " ") -> str:
    e = row.vs_baseline.get(q.key)
    if e is None or e.n == 0:
        return "—"
    text = f"{'+' if e.mean > 0 else ''}{_num(e.mean)}"
    word = verdict(row, q.key, q.lower_is_better)
    if e.n >= 2:
        text += f"{sep}[{_num(e.ci_low)}, {_num(e.ci_high)}]"
    return f"{text} {word}".strip()


def _columns(qs: list[Quantity], main: str) -> tuple[list[Quantity], list[Quantity]]:
    by_key = {q.key: q for q in qs}
    shown = [by_key[k.format(main=main)] for k in SHOWN if k.format(main=main) in by_key]
    vs = [by_key[k] for k in SHOWN_VS_BASELINE if k in by_key]
    return shown, vs


def table_cells(rows: list[GroupRow], qs: list[Quantity], main: str, baseline: str | None,
                sep: str = " ") -> tuple[list[str], list[list[str]]]:
    shown, vs = _columns(qs, main)
    header = ["fix", "seeds", *[q.label for q in shown], *[f"Δ {q.label}" for q in vs]]
    body = []
    for row in rows:
        digits = {q.key: 1 if q.key == "best_epoch" else 3 for q in shown}
        body.append([row.group, str(len(row.records)), *[cell(row.values[q.key], digits[q.key], sep) for q in shown],
                     *[diff_cell(row, q, sep) for q in vs]])
    return header, body


def print_table(rows: list[GroupRow], qs: list[Quantity], main: str, baseline: str | None, title: str) -> None:
    from rich.table import Table

    from experiments.console import table_console

    header, body = table_cells(rows, qs, main, baseline, sep="\n")  # the interval on its own line
    table = Table(title=title, caption=f"mean ± std [{CONFIDENCE:.0%} CI over seeds, Student's t]; final = the model the "
                                        f"run ends with; gap = val − train loss, train − val {main}; Δ = fix − {baseline}"
                                        ", paired by seed; better/worse: its interval excludes 0",
                  header_style="bold", show_lines=True)
    for i, name in enumerate(header):
        widest = max(len(line) for values in body for line in values[i].splitlines())
        table.add_column(name, justify="left" if i == 0 else "right", min_width=widest)
    for values in body:
        style = "bold" if values[0] == baseline else None
        table.add_row(*values, style=style)
    table_console().print(table)


def write_markdown(path: Path, rows: list[GroupRow], qs: list[Quantity], main: str, baseline: str | None,
                   title: str, intro: list[str], notes: list[str], images: list[str]) -> None:
    header, body = table_cells(rows, qs, main, baseline)
    how_to_read = (
        f"Each cell: mean ± std over seeds [{CONFIDENCE:.0%} confidence interval of the mean, Student's t]. "
        f"Δ columns: the fix minus `{baseline}`, paired by seed, with its {CONFIDENCE:.0%} interval; "
        "*better* / *worse* when the interval excludes 0, *unclear* otherwise. *Final* values belong to the model "
        "a run ends with: the last epoch, or the best epoch when early stopping restored it. The gap (val − train "
        f"loss, train − val {main}) is measured on the training split in eval mode."
    )
    lines = [f"# {title}", "", *intro, "", how_to_read, "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(values) + " |" for values in body]
    lines.append("")
    for image in images:
        lines += [f"![{Path(image).stem}]({image})", ""]
    if notes:
        lines += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    path.write_text("\n".join(lines))


def write_group_csv(path: Path, rows: list[GroupRow], qs: list[Quantity]) -> None:
    fields = ["fix", "n_seeds", "seeds"]
    for q in qs:
        fields += [f"{q.key}_{s}" for s in ("mean", "std", "ci_low", "ci_high")]
    for q in qs:
        if q.compare_to_baseline:
            fields += [f"{q.key}_vs_baseline_{s}" for s in ("mean", "ci_low", "ci_high", "n_pairs", "verdict")]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            out: dict[str, object] = {"fix": row.group, "n_seeds": len(row.records), "seeds": " ".join(row.seeds)}
            for q in qs:
                e = row.values[q.key]
                out.update({f"{q.key}_mean": e.mean, f"{q.key}_std": e.std, f"{q.key}_ci_low": e.ci_low,
                            f"{q.key}_ci_high": e.ci_high})
                d = row.vs_baseline.get(q.key)
                if q.compare_to_baseline and d is not None:
                    out.update({f"{q.key}_vs_baseline_mean": d.mean, f"{q.key}_vs_baseline_ci_low": d.ci_low,
                                f"{q.key}_vs_baseline_ci_high": d.ci_high, f"{q.key}_vs_baseline_n_pairs": d.n,
                                f"{q.key}_vs_baseline_verdict": verdict(row, q.key, q.lower_is_better)})
            writer.writerow(out)


def write_runs_csv(path: Path, rows: list[GroupRow], qs: list[Quantity]) -> None:
    """One line per run with every quantity, so any number in the report can be traced to its runs."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fix", "seed", "run_id", "run_name", *[q.key for q in qs]])
        for row in rows:
            for r in row.records:
                writer.writerow([row.group, r.seed, r.run_id, r.run_name, *[q.measure(r) for q in qs]])
