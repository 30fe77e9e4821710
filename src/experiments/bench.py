"""`experiments bench`: the framework's training path against a hand-written PyTorch loop.

Each measurement runs in its own process (a fresh memory peak), framework and loop interleaved
a, b, a, b over the repeats, so machine noise hits both alike; reported figures are medians and
ratios framework/loop from the same invocation. Keras runs too when TensorFlow is importable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.paths import project_root
from experiments.timing import PHASE_FILE_ENV

WORKLOADS: dict[str, dict[str, Any]] = {
    "tiny": {"n_samples": 1000, "n_features": 8, "hidden_dims": [10, 8], "batch_size": 32, "epochs": 10},
    "medium": {"n_samples": 50_000, "n_features": 64, "hidden_dims": [256, 256], "batch_size": 256, "epochs": 3},
    "large": {"n_samples": 200_000, "n_features": 128, "hidden_dims": [1024, 1024], "batch_size": 1024, "epochs": 1},
}
# --quick: the same code paths on small sizes, for CI (no speed claims from these).
QUICK = {
    "tiny": {"epochs": 3},
    "medium": {"n_samples": 4000, "epochs": 1},
    "large": {"n_samples": 4000, "hidden_dims": [256, 256], "batch_size": 512, "epochs": 1},
}
# Floors under Lightning's own training loop (one optimizer step per Lightning step); docs/performance.md
# has what each workload measured and what the rest costs.
TARGETS = {"tiny": 0.45, "medium": 0.85, "large": 0.97}


@dataclass
class Measurement:
    path: str
    seconds: float
    steps: float
    final_loss: float
    peak_rss_mb: float
    threads: float
    fused_optimizer: float
    cpu_seconds: float  # the process's CPU time over the same span (all its threads)


def _measure(path: str, workload: dict[str, Any]) -> Measurement:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "experiments.bench_worker", path, json.dumps(workload)], check=False,
        capture_output=True, text=True, env=env, timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench worker {path} failed:\n{out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Measurement(path=path, **{k: data[k] for k in ("seconds", "steps", "final_loss", "peak_rss_mb", "threads",
                                                                   "fused_optimizer", "cpu_seconds")})


def _summarize(samples: list[Measurement], samples_per_step: float) -> dict[str, float]:
    rates = [m.steps / m.seconds for m in samples]
    return {
        "steps_per_s": statistics.median(rates),
        "steps_per_s_each": rates,  # every repeat, in run order: the spread behind the median
        "samples_per_s": statistics.median(rates) * samples_per_step,
        # Steps per CPU-second: what each step costs in work, less moved by other tenants' load than
        # wall time when they preempt this process (its waiting is not counted).
        "steps_per_cpu_s": statistics.median(m.steps / m.cpu_seconds for m in samples),
        "peak_rss_mb": max(m.peak_rss_mb for m in samples),
        "final_loss": samples[-1].final_loss,
        "threads": samples[-1].threads,
        "fused_optimizer": samples[-1].fused_optimizer,
        "repeats": len(samples),
    }


def run_workload(name: str, repeats: int, quick: bool, seed: int = 0) -> dict[str, Any]:
    workload = {**WORKLOADS[name], **(QUICK[name] if quick else {}), "seed": seed, "threads": "auto"}
    measured: dict[str, list[Measurement]] = {"framework": [], "loop": []}
    for repeat in range(repeats):
        order = ("framework", "loop") if repeat % 2 == 0 else ("loop", "framework")
        for path in order:
            measured[path].append(_measure(path, workload))
    train_size = round(workload["n_samples"] * 0.7)
    steps_per_epoch = -(-train_size // workload["batch_size"])
    samples_per_step = train_size / steps_per_epoch
    framework = _summarize(measured["framework"], samples_per_step)
    loop = _summarize(measured["loop"], samples_per_step)
    pairs = [f / b for f, b in zip(framework["steps_per_s_each"], loop["steps_per_s_each"])]
    result: dict[str, Any] = {
        "workload": {**workload, "train_samples": train_size},
        "framework": framework,
        "loop": loop,
        "ratio": framework["steps_per_s"] / loop["steps_per_s"],
        # Each repeat's framework run against the loop run next to it (they ran back to back).
        "ratio_each": pairs,
        # Their median: the pairing cancels the machine's drift between repeats (a second view of `ratio`).
        "ratio_paired_median": statistics.median(pairs),
        # The same ratio in CPU time: a second view on a shared machine, not the target's measure.
        "cpu_ratio": framework["steps_per_cpu_s"] / loop["steps_per_cpu_s"],
        "target": TARGETS[name],
        "loss_difference": abs(framework["final_loss"] - loop["final_loss"]),
    }
    keras = _keras(workload)
    if keras is not None:
        result["keras"] = keras
    return result


def _keras(workload: dict[str, Any]) -> dict[str, float] | None:
    """Keras on the same workload, only where TensorFlow is installed (it is not a dependency)."""
    try:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            return None
    except ValueError:
        return None
    code = (
        "import json,sys,time,numpy as np\nfrom tensorflow import keras\nw=json.loads(sys.argv[1])\n"
        "n=round(w['n_samples']*0.7);x=np.random.rand(n,w['n_features']).astype('float32');"
        "y=np.random.randint(2,size=n)\nm=keras.Sequential([keras.Input((w['n_features'],))]+"
        "[keras.layers.Dense(h,activation='relu') for h in w['hidden_dims']]+[keras.layers.Dense(1,activation='sigmoid')])\n"
        "m.compile('adam','binary_crossentropy')\nt=time.perf_counter();m.fit(x,y,batch_size=w['batch_size'],"
        "epochs=w['epochs'],verbose=0)\ns=-(-n//w['batch_size'])*w['epochs']\nprint(json.dumps({'steps_per_s':s/(time.perf_counter()-t)}))"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(workload)], check=False, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def _wall(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.time()
    subprocess.run(command, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return time.time() - start


def measure_fixed_costs(repeats: int = 3) -> dict[str, Any]:
    """Cold start of the CLI (and whether it imports torch) and the phases of a default `train`."""
    cli = [sys.executable, "-m", "experiments"]
    probe = "import sys,experiments.cli as c\ntry: c.main(sys.argv[1:])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    help_imports_torch = subprocess.run([sys.executable, "-c", probe, "--help"], check=False,
                                        capture_output=True, text=True).stdout.strip().endswith("True")
    with tempfile.TemporaryDirectory() as tmp:
        error_imports_torch = subprocess.run(
            [sys.executable, "-c", probe, "train", f"paths.output_dir={tmp}", "model.activation=nope"],
            check=False, capture_output=True, text=True,
        ).stdout.strip().endswith("True")
    with tempfile.TemporaryDirectory() as tmp:
        help_s = statistics.median(_wall([*cli, "--help"]) for _ in range(repeats))
        error_s = statistics.median(_wall([*cli, "train", f"paths.output_dir={tmp}", "model.activation=nope"])
                                    for _ in range(repeats))
        # A user's first run creates the MLflow store (schema migrations); every later run opens it.
        first_train = _default_train_phases(cli, Path(tmp), "first")
        train_phases = _default_train_phases(cli, Path(tmp), "next")
    return {
        "help_s": help_s,
        "help_imports_torch": help_imports_torch,
        "config_error_s": error_s,
        "config_error_imports_torch": error_imports_torch,
        "default_train": train_phases,
        "default_train_new_store": first_train,
    }


def _default_train_phases(cli: list[str], output_dir: Path, label: str) -> dict[str, Any]:
    """Wall time of a default `experiments train` from process start to exit, split into phases."""
    phase_file = output_dir / f"phases-{label}.jsonl"
    start = time.time()
    subprocess.run([*cli, "train", f"paths.output_dir={output_dir}", "callbacks.progress_bar=null",
                    "trainer.enable_progress_bar=false"], check=False, capture_output=True, text=True,
                   env={**os.environ, PHASE_FILE_ENV: str(phase_file)})
    end = time.time()
    phases: dict[str, float] = {}
    for line in phase_file.read_text().splitlines() if phase_file.exists() else []:
        phases.update(json.loads(line))
    if not {"fit_start", "epoch_end", "fit_end", "test_end", "run_closed"} <= set(phases):
        return {}
    # Training ends with the last epoch; what follows is wrap-up, itemized.
    return {
        "startup_s": phases["fit_start"] - start,
        "training_s": phases["epoch_end"] - phases["fit_start"],
        "wrapup_s": end - phases["epoch_end"],
        "total_s": end - start,
        "wrapup_parts_s": {
            # The buffered epoch metrics written, checkpoint files, the plot's child forked.
            "metrics_checkpoints_and_plot_start": phases["fit_end"] - phases["epoch_end"],
            "test_split": phases["test_end"] - phases["fit_end"],
            # Includes waiting for the plot, if it is still being drawn, and attaching it.
            "model_logging_plot_and_run_close": phases["run_closed"] - phases["test_end"],
            "summary_and_exit": end - phases["run_closed"],
        },
    }


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    from experiments.console import table_console

    console = table_console()
    table = Table(title="experiments bench — framework vs hand-written PyTorch loop (medians)",
                  caption="ratio: median framework steps/s ÷ median loop steps/s; "
                          "paired: median of each repeat's framework ÷ loop; cpu: the ratio in steps per CPU-second")
    for column in ("workload", "path", "steps/s", "samples/s", "ratio", "paired", "cpu", "target", "peak RSS MB",
                   "threads"):
        table.add_column(column, justify="right" if column not in ("workload", "path") else "left")
    for name, result in report["workloads"].items():
        for path in ("framework", "loop", "keras"):
            if path not in result:
                continue
            row = result[path]
            ratio = f"{result['ratio']:.2f}" if path == "framework" else ""
            paired = f"{result['ratio_paired_median']:.2f}" if path == "framework" else ""
            cpu = f"{result['cpu_ratio']:.2f}" if path == "framework" else ""
            target = f"≥ {result['target']}" if path == "framework" else ""
            table.add_row(name, path, f"{row['steps_per_s']:.0f}", f"{row.get('samples_per_s', 0):.0f}", ratio, paired,
                          cpu, target, f"{row.get('peak_rss_mb', 0):.0f}", f"{row.get('threads', 0):.0f}")
    if report["workloads"]:  # `--workloads sweep` alone times no training workload
        console.print(table)
    _print_sweeps(console, report)
    fixed = report.get("fixed_costs")
    if fixed:
        console.print(f"`experiments --help`: {fixed['help_s']:.2f} s (imports torch: {fixed['help_imports_torch']}); "
                      f"config error: {fixed['config_error_s']:.2f} s (imports torch: {fixed['config_error_imports_torch']})")
        for key, label in (("default_train", "store exists"), ("default_train_new_store", "first run, new store")):
            phases = fixed.get(key) or {}
            if phases:
                console.print(f"default `experiments train` ({label}): " + ", ".join(
                    f"{k[:-2]} {v:.2f} s" for k, v in phases.items() if isinstance(v, float)))
                console.print("  wrap-up: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s"
                                                        for k, v in phases["wrapup_parts_s"].items()))


def _print_sweeps(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    if "sweeps" not in report:
        return
    table = Table(title="experiments bench — sweeps, whole process (medians)",
                  caption="speed-up: sequential ÷ population seconds; per member: median seconds of one "
                          "member's tracking as its run opens and as it closes")
    for column in ("sweep", "trials", "sequential s", "population s", "speed-up", "target", "trials/min",
                   "training s", "per member open s", "per member close s"):
        table.add_column(column, justify="left" if column == "sweep" else "right")
    for name, row in report["sweeps"].items():
        phases = row["population_phases"]
        table.add_row(name, str(row["trials"]), f"{row['sequential_s']:.1f}", f"{row['population_s']:.1f}",
                      f"{row['speedup']:.2f}", f"≥ {row['target']}",
                      f"{row['trials_per_min']['sequential']:.0f} → {row['trials_per_min']['population']:.0f}",
                      f"{phases.get('training_s', 0):.2f}", f"{phases.get('member_open_s', 0):.3f}",
                      f"{phases.get('member_close_s', 0):.3f}")
    reference = report["sweep_reference"]
    table.add_row("hand-written loop + MLflow", str(reference["trials"]), "", f"{reference['seconds']:.1f}", "", "",
                  f"{reference['trials_per_min']:.0f}", "", "", "")
    console.print(table)
    for name, row in report["sweeps"].items():
        cpu = row.get("cpu_s")
        if cpu:  # CPU seconds near cores × wall: the machine, not waiting, is what is left
            console.print(f"{name}, CPU time of the process tree (median s): sequential {cpu['sequential']:.1f}, "
                          f"population {cpu['population']:.1f}")
        parts = row["population_phases"].get("member_parts_s") or {}
        if parts:
            console.print(f"{name}, one member's tracking (median s): "
                          + ", ".join(f"{part} {seconds:.3f}" for part, seconds in parts.items()))


def main(argv: list[str]) -> int:
    from experiments.errors import UserError

    parser = argparse.ArgumentParser(prog="experiments bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="tiny,medium,large,sweep",
                        help="comma-separated: tiny, medium, large (training speed), sweep (whole sweeps)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep-repeats", type=int, default=1, help="repeats of each (minutes-long) sweep")
    parser.add_argument("--quick", action="store_true", help="small sizes and 1 repeat, for CI")
    parser.add_argument("--no-fixed-costs", action="store_true", help="skip the cold-start and phase timings")
    parser.add_argument("--out", default=None, help="JSON output file (default outputs/bench/bench-<time>.json)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS and n != "sweep"]
    if unknown:
        raise UserError(f"unknown workload {unknown[0]!r}; choose from: {', '.join(WORKLOADS)}, sweep.")
    repeats = 1 if args.quick else max(1, args.repeats)
    report: dict[str, Any] = {"quick": args.quick, "repeats": repeats, "machine": _machine(), "workloads": {}}
    for name in names:
        if name != "sweep":
            report["workloads"][name] = run_workload(name, repeats, args.quick)
    if "sweep" in names:
        from experiments.bench_sweeps import QUICK_SWEEPS, SWEEPS, run_reference, run_sweep

        sweep_repeats = 1 if args.quick else max(1, args.sweep_repeats)
        report["sweeps"] = {name: run_sweep(name, sweep_repeats, args.quick)
                            for name in (QUICK_SWEEPS if args.quick else SWEEPS)}
        report["sweep_reference"] = run_reference(args.quick)
    if not args.no_fixed_costs:
        report["fixed_costs"] = measure_fixed_costs(1 if args.quick else 3)
    out = Path(args.out) if args.out else project_root() / "outputs" / "bench" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    _print_report(report)
    print(f"wrote {out}")
    return 0


def _machine() -> dict[str, Any]:
    import platform

    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "processor": platform.processor()}
