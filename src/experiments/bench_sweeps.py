"""The `sweep` workload of `experiments bench`: whole sweeps, as a user types them, timed from process
start to exit — the same trials one after another (Hydra's basic launcher) and as populations
(`hydra/launcher=population`), interleaved in the same invocation, with a hand-written PyTorch + MLflow
script of the same grid as a reference. Each population run also reports where its time went: its
training, and what one member's tracking costs (opening its run with params and config; closing it
with the test scores, plot, model and status).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.timing import PHASE_FILE_ENV

QUIET = ["callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]
LRS = "optimizer.lr=0.0003,0.001,0.003,0.01"
# name → (how to run it, trials, the speed-up population/sequential the issue asks for)
SWEEPS: dict[str, dict[str, Any]] = {
    "grid16": {"train": [LRS, "seed=1,2,3,4"], "trials": 16, "target": 2.0},
    # 64 trials: model logging may be restricted to the population's best member there.
    "grid64": {"train": [LRS, "seed=range(1,17)"], "trials": 64, "target": 5.0,
               "population": ["logger.log_model=best"]},
    "study": {"study": [], "trials": 39, "target": 3.0},
}
# A member's tracking, in the order it happens: its run opened; its params, tags, config files, dataset
# entry and column report (built, and written unless a worker writes it: `record_write`, 0 when none did);
# then its learning curve, model, metrics and status.
MEMBER_PARTS = ("run", "record", "record_write", "plot", "model", "metrics", "status")
# --quick: the same code path on a 2×2 grid, for CI (no speed claims; the study's own test runs it).
QUICK_SWEEPS: dict[str, dict[str, Any]] = {
    "grid16": {"train": ["optimizer.lr=0.001,0.01", "seed=1,2", "trainer.max_epochs=2"], "trials": 4, "target": 2.0},
}


def _command(sweep: dict[str, Any], output_dir: Path, population: bool) -> list[str]:
    cli = [sys.executable, "-m", "experiments"]
    launcher = ["hydra/launcher=population", *sweep.get("population", [])] if population else ["hydra/launcher=basic"]
    where = [f"paths.output_dir={output_dir}"]
    if "study" in sweep:
        return [*cli, "study", *sweep["study"], *where, *launcher]
    return [*cli, "train", "-m", *sweep["train"], *where, *QUIET, *launcher]


def _timed(command: list[str], phase_file: Path | None = None) -> tuple[float, float]:
    """Wall seconds from process start to exit, and the CPU seconds of the whole process tree (the
    sweep and the worker processes it waited for): a sweep that keeps every core busy shows it here."""
    import resource

    env = None
    if phase_file is not None:
        import os

        env = {**os.environ, PHASE_FILE_ENV: str(phase_file)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"bench sweep {' '.join(command[2:5])} failed:\n{out.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _empty_store(folder: Path) -> Path:
    """A new MLflow store, its schema created once. Every timed sweep starts from a copy, as a user's
    sweep finds the project's store there after their first command (creating one takes 1–2 s, the
    same on both paths, and is not what a sweep's speed is about)."""
    db = folder / "store-template" / "mlflow.db"
    db.parent.mkdir(parents=True)
    make = f"from mlflow import MlflowClient; MlflowClient({f'sqlite:///{db}'!r}).search_experiments()"
    subprocess.run([sys.executable, "-c", make], check=True, capture_output=True, timeout=600)
    return db


def _with_store(output_dir: Path, store: Path) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store, output_dir / "mlflow.db")
    return output_dir


def _phases(phase_file: Path) -> dict[str, float]:
    """Training and per-member tracking seconds from a population run's phase marks."""
    marks: list[tuple[str, float]] = []
    for line in phase_file.read_text().splitlines() if phase_file.exists() else []:
        marks.extend(json.loads(line).items())

    def spans(start: str, end: str) -> list[float]:
        starts = [t for name, t in marks if name == start]
        ends = [t for name, t in marks if name == end]
        return [b - a for a, b in zip(starts, ends)]

    def median(phase: str) -> float:
        times = spans(f"{phase}_start", f"{phase}_end")
        return statistics.median(times) if times else 0.0

    return {
        "training_s": sum(spans("population_fit_start", "population_fit_end")),
        "member_open_s": median("member_open"),
        "member_close_s": median("member_close"),
        # What one member's tracking is made of (the model: of the members that log one).
        "member_parts_s": {part: median(f"member_{part}") for part in MEMBER_PARTS},
    }


def median_phases(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the population runs of a sweep (nested figures too)."""
    if not phases:
        return {}
    return {key: median_phases([p[key] for p in phases]) if isinstance(phases[0][key], dict)
            else statistics.median(p[key] for p in phases) for key in phases[0]}


def run_sweep(name: str, repeats: int, quick: bool) -> dict[str, Any]:
    sweep = (QUICK_SWEEPS if quick else SWEEPS)[name]
    seconds: dict[str, list[float]] = {"sequential": [], "population": []}
    cpu: dict[str, list[float]] = {"sequential": [], "population": []}
    phases: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = _empty_store(Path(tmp))
        for repeat in range(repeats):
            order = ("sequential", "population") if repeat % 2 == 0 else ("population", "sequential")
            for kind in order:
                output_dir = _with_store(Path(tmp) / f"{kind}-{repeat}", store)
                phase_file = output_dir.with_suffix(".phases") if kind == "population" else None
                wall, cpu_s = _timed(_command(sweep, output_dir, kind == "population"), phase_file)
                seconds[kind].append(wall)
                cpu[kind].append(cpu_s)
                if phase_file is not None:
                    phases.append(_phases(phase_file))
    sequential, population = statistics.median(seconds["sequential"]), statistics.median(seconds["population"])
    trials = sweep["trials"]
    return {
        "trials": trials,
        "sequential_s": sequential,
        "population_s": population,
        "sequential_s_each": seconds["sequential"],
        "population_s_each": seconds["population"],
        "speedup": sequential / population,
        "cpu_s": {kind: statistics.median(values) for kind, values in cpu.items()},
        "target": sweep["target"],
        "trials_per_min": {"sequential": 60 * trials / sequential, "population": 60 * trials / population},
        "population_phases": median_phases(phases),
    }


def run_reference(quick: bool) -> dict[str, Any]:
    """The hand-written script: the grid16 trials as plain PyTorch loops, each an MLflow run with its
    params and per-epoch validation loss, in one process."""
    lrs, seeds, epochs = ([0.001, 0.01], [1, 2], 2) if quick else ([0.0003, 0.001, 0.003, 0.01], [1, 2, 3, 4], 10)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _with_store(Path(tmp) / "reference", _empty_store(Path(tmp)))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _REFERENCE, json.dumps([lrs, seeds, epochs]), str(folder)],
                             check=False, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"the reference sweep script failed:\n{out.stderr[-3000:]}")
    trials = len(lrs) * len(seeds)
    return {"trials": trials, "seconds": seconds, "trials_per_min": 60 * trials / seconds}


# What a careful user writes without a framework: the seed data and network, Adam, batch 32.
_REFERENCE = """
import json, sys, torch, torch.nn.functional as F
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from experiments.data.sources import load_source
from experiments.models.mlp import build_mlp
lrs, seeds, epochs = json.loads(sys.argv[1])
client = MlflowClient(f"sqlite:///{sys.argv[2]}/mlflow.db")
experiment = client.create_experiment("reference")
raw = load_source("seed_random", {"n_samples": 1000, "n_features": 8, "seed": 0})
x = torch.tensor(raw.frame.drop(columns=[raw.target]).to_numpy(), dtype=torch.float32)
y = torch.tensor(raw.frame[raw.target].to_numpy(), dtype=torch.float32)
x_train, y_train, x_val, y_val = x[:700], y[:700], x[700:850], y[700:850]
for lr in lrs:
    for seed in seeds:
        torch.manual_seed(seed)
        net = build_mlp(8, 1, [10, 8])
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        run = client.create_run(experiment).info.run_id
        client.log_batch(run, params=[Param("lr", str(lr)), Param("seed", str(seed))])
        for epoch in range(epochs):
            net.train()
            for index in torch.randperm(700, generator=torch.Generator().manual_seed(seed + epoch)).split(32):
                loss = F.binary_cross_entropy_with_logits(net(x_train[index]).squeeze(-1), y_train[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                val = F.binary_cross_entropy_with_logits(net(x_val).squeeze(-1), y_val).item()
            client.log_batch(run, metrics=[Metric("val/loss", val, 0, epoch)])
        client.set_terminated(run, "FINISHED")
"""
