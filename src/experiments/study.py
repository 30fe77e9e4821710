"""`experiments study`: the overfitting study in one command.

Runs the baseline and every fix preset of `conf/experiment/overfitting/` × N seeds as one Hydra
multirun (so the runs share one MLflow sweep parent run), then builds the comparison report from
MLflow (`experiments compare`) and attaches it to that parent run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from experiments.errors import UserError
from experiments.paths import config_dir, register_resolvers

PRESET_GROUP = "overfitting"
BASELINE = "baseline"
STUDY_TAG = "study"
# A study prints dozens of runs; progress bars would bury the table at the end.
POPULATION_LAUNCHER = "population"
QUIET = ("callbacks.progress_bar=null", "trainer.enable_progress_bar=false")


def available_fixes() -> list[str]:
    """Every preset in conf/experiment/overfitting/, the baseline first: a new preset joins the study."""
    names = sorted(p.stem for p in (config_dir() / "experiment" / PRESET_GROUP).glob("*.yaml"))
    return [BASELINE, *(n for n in names if n != BASELINE)] if BASELINE in names else names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="experiments study",
        description="Run the overfitting study (baseline + every fix × seeds) as one multirun, then compare. "
                    "Extra key=value arguments are Hydra overrides for every run, e.g. trainer.max_epochs=30 "
                    "hydra/launcher=joblib.",
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, 1..N (default 3)")
    parser.add_argument("--fixes", default=None,
                        help=f"comma-separated subset, e.g. baseline,l2,dropout (default: all of {', '.join(available_fixes())})")
    parser.add_argument("--output", "-o", type=Path, default=None, help="report folder (default: outputs/reports/study-<id>)")
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    args, rest = build_parser().parse_known_args(argv)
    unknown = [a for a in rest if "=" not in a or a.startswith("-")]
    if unknown:
        raise UserError(f"experiments study does not know {' '.join(unknown)}; it takes --seeds, --fixes, --output "
                        "and key=value Hydra overrides.")
    if args.seeds < 1:
        raise UserError(f"--seeds must be a positive integer, got {args.seeds}.")
    known = available_fixes()
    fixes = [f.strip() for f in args.fixes.split(",") if f.strip()] if args.fixes else known
    bad = [f for f in fixes if f not in known]
    if bad:
        raise UserError(f"Unknown fix {', '.join(map(repr, bad))}; choose from: {', '.join(known)}.")
    args.fixes = fixes
    return args, rest


def resolved_store(overrides: list[str]) -> tuple[str, str, str]:
    """(tracking URI, experiment name, output dir) the runs will use, from the composed config itself."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.tracking.store import resolve_tracking_uri

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={PRESET_GROUP}/{BASELINE}", *overrides])
    except (HydraException, OmegaConfBaseException) as err:  # bad overrides: already one clear sentence
        raise UserError(f"{str(err).strip().splitlines()[0]} Check the key=value overrides.") from None
    finally:
        GlobalHydra.instance().clear()
    if cfg.get("logger") is None or not cfg.logger.get("enabled", True):
        raise UserError("The study compares runs through MLflow; drop the override that turns the logger off.")
    uri = resolve_tracking_uri(cfg.logger.get("tracking_uri"), cfg.paths.output_dir)
    return uri, str(cfg.logger.experiment_name), str(cfg.paths.output_dir)


def _ready_for_report(uri: str, experiment: str) -> None:
    """While the runs train, load what the report needs (MLflow, its store, SciPy, Matplotlib): seconds
    the report would otherwise spend after training. Anything that fails here fails again, and is
    reported, when the report itself asks for it."""
    try:
        if hasattr(os, "nice"):  # this thread only (Linux): the runs' processes come first; this has until they end
            os.nice(10)
        import scipy.stats  # noqa: F401

        from experiments.report.plots import pyplot_agg
        from experiments.tracking.store import prepare_experiment, sqlite_path

        if sqlite_path(uri) is not None:  # opened under the store's lock, as every run opens it
            prepare_experiment(uri, experiment)
        pyplot_agg()
    except Exception:  # noqa: BLE001, S110 - see the docstring
        pass


def _quoted(value: str) -> str:
    """A Hydra override value kept verbatim (paths may hold spaces, `=` or commas)."""
    return "'" + value.replace("'", "\\'") + "'"


def _launcher(overrides: list[str]) -> list[str]:
    """Runs that share a network shape train together as populations, unless the command names a launcher
    (`hydra/launcher=basic` trains them one by one)."""
    if any(o.lstrip("+~").startswith("hydra/launcher=") for o in overrides):
        return []
    return [f"hydra/launcher={POPULATION_LAUNCHER}"]


def main(argv: list[str]) -> int:
    args, overrides = parse(argv)
    uri, experiment, output_dir = resolved_store(overrides)
    study_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    presets = ",".join(f"{PRESET_GROUP}/{fix}" for fix in args.fixes)
    seeds = ",".join(str(s) for s in range(1, args.seeds + 1))
    command = [sys.executable, "-m", "experiments", "train", "-m", f"experiment={presets}", f"seed={seeds}",
               f"++tags.{STUDY_TAG}={study_id}", f"sweep_name=overfitting-study-{study_id}",
               # The sweep parent opens before any preset applies: name the store and experiment for it.
               f"logger.tracking_uri={_quoted(uri)}", f"logger.experiment_name={_quoted(experiment)}", *QUIET,
               *_launcher(overrides), *overrides]
    print(f"Study {study_id}: {len(args.fixes)} presets × {args.seeds} seeds = {len(args.fixes) * args.seeds} runs "
          f"into {uri} (experiment {experiment!r})", flush=True)
    env = {**os.environ}
    env.pop("EXPERIMENTS_SUBCOMMAND", None)
    process = subprocess.Popen(command, env=env)
    threading.Thread(target=_ready_for_report, args=(uri, experiment), daemon=True).start()
    try:
        code = process.wait()
    except KeyboardInterrupt:  # the multirun got the Ctrl-C too: let it close its runs, then stop
        process.wait()
        print("Study interrupted; its finished runs are in MLflow (experiments compare --filter "
              f"\"tags.{STUDY_TAG} = '{study_id}'\").", file=sys.stderr)
        return 130
    if code != 0:
        print(f"warning: the study's multirun exited with {code}; comparing the runs that finished.", file=sys.stderr)

    from experiments.compare import compare

    out = args.output or Path(output_dir) / "reports" / f"study-{study_id}"
    seeds_text = "1" if args.seeds == 1 else f"1..{args.seeds}"
    rerun = " ".join(["experiments study", f"--seeds {args.seeds}",
                      *([f"--fixes {','.join(args.fixes)}"] if args.fixes != available_fixes() else []), *overrides])
    compare(uri, experiment=experiment, filter_string=f"tags.{STUDY_TAG} = '{study_id}'", output_dir=out,
            title=f"Overfitting study {study_id}",
            intro=[f"Reproduce: `{rerun}` (seeds {seeds_text}; tag `{STUDY_TAG}={study_id}`)."])
    return 0 if code == 0 else 1
