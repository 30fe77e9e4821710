"""`experiments compare`: the per-fix comparison report, built from the MLflow store alone.

Select runs by experiment name, sweep parent run id and/or MLflow filter string; group them by a tag
(`fix` by default); summarize each quantity over seeds; write report.md, report.csv, runs.csv and the
PNGs into the output dir; log those files to the sweep parent run when all runs belong to one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import UserError
from experiments.paths import project_root
from experiments.tracking.store import resolve_tracking_uri

REPORT_ARTIFACT_PATH = "report"
DEFAULT_BASELINE = "baseline"  # the study's name for its unfixed runs


@dataclass
class CompareResult:
    output_dir: Path
    files: list[Path]
    parent_run_id: str | None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="experiments compare",
        description="Compare fixes across seeds from MLflow: a table (mean ± std, 95% CI, paired difference "
                    "to the baseline), Markdown, CSV and PNGs.",
    )
    parser.add_argument("--experiment", "-e", help="MLflow experiment name, e.g. overfitting")
    parser.add_argument("--parent", "-p", help="sweep parent run id: compare its child runs")
    parser.add_argument("--filter", "-f", dest="filter_string",
                        help="MLflow filter string, e.g. \"tags.study = 'abc'\" or \"params.model.dropout = '0.5'\"")
    parser.add_argument("--group-by", default="fix", help="run tag that names the fix (default: fix)")
    parser.add_argument("--baseline", default=None,
                        help=f"the group every other is compared with (default: {DEFAULT_BASELINE}, "
                             "when there is one)")
    parser.add_argument("--output", "-o", type=Path, default=None,
                        help="report folder (default: outputs/reports/<experiment or parent>-<time>)")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or outputs/mlflow.db")
    parser.add_argument("--title", default=None, help="the report's heading")
    parser.add_argument("--no-log", action="store_true", help="do not attach the report to the sweep parent run")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri, project_root() / "outputs")
    compare(uri, experiment=args.experiment, parent=args.parent, filter_string=args.filter_string,
            group_by=args.group_by, baseline=args.baseline, output_dir=args.output, title=args.title,
            log_to_parent=not args.no_log)
    return 0


def compare(uri: str, *, experiment: str | None = None, parent: str | None = None, filter_string: str | None = None,
            group_by: str = "fix", baseline: str | None = None, output_dir: Path | None = None,
            title: str | None = None, log_to_parent: bool = True, intro: list[str] | None = None) -> CompareResult:
    from experiments.report.plots import plot_gap_bars, plot_val_curves
    from experiments.report.render import print_table, write_group_csv, write_markdown, write_runs_csv
    from experiments.report.runs import CURVE_KEYS, open_client, select_runs, to_records
    from experiments.report.table import build_rows, main_metric_of, quantities

    client = open_client(uri)
    selection = select_runs(client, uri, experiment, parent, filter_string)
    main = main_metric_of(selection.runs)
    records, notes = to_records(client, selection.runs, group_by, (*CURVE_KEYS, f"val/{main}", f"train/{main}", f"gap/{main}"))
    groups = sorted({r.group for r in records})
    base = chosen_baseline(baseline, groups, group_by)  # before anything is written: a wrong name writes none
    if base is None:
        notes.append(f"No {group_by}={DEFAULT_BASELINE!r} runs: no differences to a baseline; "
                     f"pass --baseline with one of: {', '.join(groups)}.")
    rows = build_rows(records, main, base)
    qs = quantities(main)

    title = title or f"Overfitting fixes compared: {selection.label}"
    out = output_dir or project_root() / "outputs" / "reports" / f"{selection.label}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    curves = plot_val_curves(rows, base, out / "val_curves.png")
    bars = plot_gap_bars(rows, base, out / "gap_bars.png")
    seeds = sorted({r.seed for r in records})
    about = [*(intro or []),
             f"{len(records)} runs, {len(rows)} groups by tag `{group_by}`, seeds {', '.join(seeds)}; "
             f"store {uri}" + (f", sweep parent run `{selection.parent_run_id}`" if selection.parent_run_id else "") + "."]
    write_markdown(out / "report.md", rows, qs, main, base, title, about, notes, [curves.name, bars.name])
    write_group_csv(out / "report.csv", rows, qs)
    write_runs_csv(out / "runs.csv", rows, qs)
    files = [out / "report.md", out / "report.csv", out / "runs.csv", curves, bars]

    print_table(rows, qs, main, base, title)
    for note in notes:
        print(f"note: {note}")
    print(f"Report: {out}/report.md (+ report.csv, runs.csv, {curves.name}, {bars.name})")
    if selection.parent_run_id and log_to_parent:
        for file in files:
            client.log_artifact(selection.parent_run_id, str(file), REPORT_ARTIFACT_PATH)
        print(f"Logged to the sweep parent run {selection.parent_run_id} under {REPORT_ARTIFACT_PATH}/")
    return CompareResult(out, files, selection.parent_run_id)


def chosen_baseline(baseline: str | None, groups: list[str], group_by: str) -> str | None:
    """The group the others are compared with. The default may be missing (the report then shows no
    differences); a group the user named must exist, or the report would silently compare nothing."""
    if baseline is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in groups else None
    if baseline not in groups:
        raise UserError(f"--baseline {baseline} matches no {group_by} group; "
                        f"the groups are: {', '.join(groups)}.")
    return baseline


if __name__ == "__main__":  # pragma: no cover
    import sys

    try:
        sys.exit(main(sys.argv[1:]))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
