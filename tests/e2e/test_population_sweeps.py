"""Population sweeps end to end: real `experiments train -m hydra/launcher=population` processes, the real
grid and Optuna sweepers, a real sqlite MLflow store; each member compared with the same job run alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from experiments.paths import project_root
from experiments.timing import PHASE_FILE_ENV
from experiments.worker_process import forks_here
from tests.conftest import FAST, parent_and_children, run_cli

pytestmark = pytest.mark.e2e

POPULATION = "hydra/launcher=population"
# Dropout and input noise on: the members' random draws must follow their own seeds, as alone.
GRID = ["optimizer.lr=0.001,0.01", "seed=1,2", "model.dropout=0.2", "regularization.input_noise=0.1",
        "trainer.max_epochs=4", "data.options.n_samples=300"]


def sweep(outputs: Path, cwd: Path, *args: str) -> Any:
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", *FAST, *args], cwd=cwd)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result


def training_sweep(outputs: Path, cwd: Path, seeds: str) -> subprocess.Popen:
    """A population sweep of 2 lr × `seeds` that would train for ever, in its own process group, returned
    once its population trains."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments", "train", "-m", f"paths.output_dir={outputs}", *FAST, POPULATION,
         "optimizer.lr=0.001,0.01", f"seed={seeds}", "trainer.max_epochs=100000", "data.options.n_samples=300",
         "logger.log_model=false"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if f"Training {2 * len(seeds.split(','))} runs as one population" in line:
            return process
    pytest.fail("".join(seen[-30:]))


def histories(client: MlflowClient, run: Any) -> dict[str, list[tuple[int, float]]]:
    return {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics}


def by_point(children: list[Any]) -> dict[tuple[str, str], Any]:
    return {(run.data.params["optimizer.lr"], run.data.params["seed"]): run for run in children}


@pytest.fixture(scope="module")
def population_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The 2×2 grid through the population launcher (shared by the tests that read it)."""
    folder = tmp_path_factory.mktemp("population")
    outputs = folder / "outputs"
    # 1.5 MB holds two members of the seed network (its evaluation batch dominates): the grid trains as
    # two populations of two, one after the other, and must still equal its runs alone.
    return outputs, sweep(outputs, folder, POPULATION, "hydra.launcher.memory_gb=0.0015", *GRID)


def test_a_grid_trains_as_one_population_and_each_member_equals_its_run_alone(
        population_grid: tuple[Path, Any], tmp_path: Path) -> None:
    outputs, result = population_grid
    assert "4 runs of one shape: more than fits in memory at once, trained as 2 populations of up to 2" in result.stdout
    assert result.stdout.count("Training 2 runs as one population") == 2

    client, parent, children = parent_and_children(outputs)
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert {run.info.status for run in children} == {"FINISHED"}
    members = by_point(children)
    assert sorted(members) == [("0.001", "1"), ("0.001", "2"), ("0.01", "1"), ("0.01", "2")]

    alone_outputs = tmp_path / "alone"
    sweep(alone_outputs, tmp_path, *GRID)
    alone_client, alone_parent, alone_children = parent_and_children(alone_outputs)
    for point, alone in by_point(alone_children).items():
        member = members[point]
        # The same record: every param (but where it was written), every metric at every epoch.
        paths = {k for k, v in alone.data.params.items() if str(alone_outputs) in v or k == "logger.tracking_uri"}
        assert {k: v for k, v in member.data.params.items() if k not in paths} == \
               {k: v for k, v in alone.data.params.items() if k not in paths}
        got, want = histories(client, member), histories(alone_client, alone)
        assert sorted(got) == sorted(want)
        for key, series in want.items():
            assert [step for step, _ in got[key]] == [step for step, _ in series], key
            assert [value for _, value in got[key]] == pytest.approx([value for _, value in series], abs=1e-5), key
        assert member.info.run_name == alone.info.run_name
        assert {a.path for a in client.list_artifacts(member.info.run_id, "plots")} == {"plots/learning_curve.png"}
    # The sweeper got each member's objective: the parent's summary names the same best point.
    best = min(children, key=lambda run: run.data.metrics["val/loss_best"])
    assert parent.data.tags["sweep.best_run_id"] == best.info.run_id
    alone_best = next(r for r in alone_children if r.info.run_id == alone_parent.data.tags["sweep.best_run_id"])
    assert by_point([alone_best]).keys() == by_point([best]).keys()


def test_a_member_reproduces_alone_and_its_model_evaluates(population_grid: tuple[Path, Any], tmp_path: Path) -> None:
    outputs, _ = population_grid
    _, _, children = parent_and_children(outputs)
    member = by_point(children)[("0.01", "2")]
    reproduced = run_cli(["reproduce", member.info.run_id, f"--tracking-uri=sqlite:///{outputs / 'mlflow.db'}"],
                         cwd=tmp_path)
    assert reproduced.returncode == 0, reproduced.stderr[-3000:]
    assert "identical" in reproduced.stdout or "within tolerance" in reproduced.stdout
    evaluated = run_cli(["eval", f"run_id={member.info.run_id}", f"tracking_uri=sqlite:///{outputs / 'mlflow.db'}"],
                        cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"{member.data.metrics['test/loss']:.4f}" in evaluated.stdout


def test_jobs_of_different_shapes_form_populations_and_single_runs(tmp_path: Path, outputs: Path) -> None:
    # Clipping mixes the members' gradients in one norm: those jobs train alone.
    result = sweep(outputs, tmp_path, POPULATION, "model.hidden_dims=[10,8],[4]", "seed=1,2",
                   "trainer.gradient_clip_val=null,1.0", "trainer.max_epochs=2", "data.options.n_samples=300",
                   "logger.log_model=false")
    assert result.stdout.count("Training 2 runs as one population") == 2
    _, parent, children = parent_and_children(outputs)
    assert len(children) == 8 and {run.info.status for run in children} == {"FINISHED"}
    points = {(r.data.params["model.hidden_dims"], r.data.params["seed"], r.data.params["trainer.gradient_clip_val"])
              for r in children}
    assert len(points) == 8
    assert (parent.data.metrics["sweep/jobs"], parent.data.metrics["sweep/failed_jobs"]) == (8, 0)


def test_a_member_whose_loss_turns_nan_fails_alone(tmp_path: Path, outputs: Path) -> None:
    # SGD at lr 1e6 overflows within an epoch; the member beside it trains on.
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", *FAST, POPULATION, "optimizer=sgd",
                      "optimizer.lr=0.01,1e6", "trainer.max_epochs=2", "logger.log_model=false"], cwd=tmp_path)
    assert result.returncode != 0
    assert "Training 2 runs as one population" in result.stdout
    _, parent, children = parent_and_children(outputs)
    status = {run.data.params["optimizer.lr"]: run for run in children}
    assert status["0.01"].info.status == "FINISHED"
    failed = status["1000000.0"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["failure_reason"].startswith("Training loss became")
    assert parent.data.metrics["sweep/failed_jobs"] == 1


def test_optuna_batches_trials_into_populations_resumes_and_prunes_a_member(tmp_path: Path, outputs: Path) -> None:
    # Grid order (sampler seed 0) over 2 lr × 4 seeds: the first invocation's batch of 4 (lr 1e-6, 1e-2,
    # 1e-2, 1e-6) trains unpruned, as no trial is complete yet. The same command again resumes the study:
    # its batch (1e-2, 1e-2, 1e-6, 1e-6) meets the median of the first four, and the members at lr 1e-6
    # fall behind it and are pruned while the members beside them train on.
    args = ["sweep=optuna", "hydra.sweeper.params=null", POPULATION, "data=wine", "trainer.max_epochs=4",
            "logger.log_model=false", "hydra.sweeper.sampler=grid", "hydra.sweeper.seed=0",
            "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=4", "hydra.sweeper.pruner=median",
            "hydra.sweeper.n_startup_trials=1", "hydra.sweeper.n_warmup_steps=0",
            "optimizer.lr=choice(1e-2,1e-6)", "seed=choice(1,2,3,4)"]
    for invocation in range(2):
        result = run_cli(["train", f"paths.output_dir={outputs}", *FAST, *args], cwd=tmp_path)
        assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
        assert result.stdout.count("Training 4 runs as one population") == 1, invocation

    study = optuna.load_study(study_name="mlp_wine", storage=f"sqlite:///{outputs / 'optuna.db'}")
    trials = study.trials
    assert len(trials) == 8 and len({tuple(sorted(t.params.items())) for t in trials}) == 8  # no point twice
    assert [t.state.name for t in trials[:4]] == ["COMPLETE"] * 4
    pruned = [t for t in trials[4:] if t.state.name == "PRUNED"]
    assert pruned and all(t.params["optimizer.lr"] == 1e-6 for t in pruned)
    assert all(t.state.name == "COMPLETE" for t in trials[4:] if t.params["optimizer.lr"] == 1e-2)
    client, parent, children = parent_and_children(outputs)
    runs = {int(run.data.params["optuna.trial_number"]): run for run in children}
    assert sorted(runs) == list(range(8))
    for trial in trials:
        run = runs[trial.number]
        if trial.state.name == "PRUNED":
            assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "PRUNED"
            assert len(client.get_metric_history(run.info.run_id, "val/loss")) == len(trial.intermediate_values) < 4
        else:
            assert run.info.status == "FINISHED"
            assert trial.value == pytest.approx(run.data.metrics["val/loss_best"])
    assert parent.info.status == "FINISHED"


def test_an_optuna_sweeps_batches_share_one_set_of_worker_processes(tmp_path: Path, outputs: Path) -> None:
    """Batch after batch of 8 same-shape trials: the writer and plot workers start once for the sweep (their
    start-up is seconds of a core), and every batch's runs are still complete."""
    phases = tmp_path / "phases.jsonl"
    args = ["sweep=optuna", "hydra.sweeper.params=null", POPULATION, "data=wine", "trainer.max_epochs=2",
            "logger.log_model=false", "hydra.sweeper.sampler=grid", "hydra.sweeper.seed=0",
            "hydra.sweeper.n_trials=16", "hydra.sweeper.n_jobs=8", "hydra.sweeper.pruner=none",
            "optimizer.lr=choice(1e-2,1e-3)", "seed=choice(1,2,3,4,5,6,7,8)"]
    result = run_cli(["train", f"paths.output_dir={outputs}", *FAST, *args], cwd=tmp_path,
                     env={PHASE_FILE_ENV: str(phases)})
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert result.stdout.count("Training 8 runs as one population") == 2
    marks = [name for line in phases.read_text().splitlines() for name in json.loads(line)]
    assert marks.count("population_writer_start") == 1 and marks.count("plot_worker_start") == 1, marks
    client, parent, children = parent_and_children(outputs)
    assert len(children) == 16 and {run.info.status for run in children} == {"FINISHED"}
    for run in children:  # each run's record, written by the shared writer, and its learning curve
        assert run.data.params["seed"] and "optuna.trial_number" in run.data.params
        assert [f.path for f in client.list_artifacts(run.info.run_id, "plots")] == ["plots/learning_curve.png"]
    assert parent.info.status == "FINISHED"


def _masked(text: str, outputs: Path) -> str:
    """`text` with where a sweep wrote (its outputs and the time-stamped sweep folder) masked."""
    (sweep_dir,) = (outputs / "multiruns").glob("*/*")
    return text.replace(str(sweep_dir), "SWEEP").replace(str(outputs), "OUT")


def _job_files(outputs: Path) -> dict[str, str]:
    """Every job's saved Hydra files, by job number and name."""
    (sweep_dir,) = (outputs / "multiruns").glob("*/*")
    return {str(path.relative_to(sweep_dir)): _masked(path.read_text(), outputs)
            for path in sorted(sweep_dir.glob("*/.hydra/*.yaml"))}


def test_a_large_population_saves_the_job_files_and_records_its_worker_would_not_change(
        tmp_path: Path, outputs: Path) -> None:
    """From 8 members, the population trains in the host process forked as the sweep starts, and a worker
    process saves the jobs' Hydra files, writes the runs' opening records while the next members open and
    their epoch metrics while they train: the same files and runs (every epoch's values; the best member's
    model linked to its epoch's scores) as the sweep's own process trains and writes alone."""
    grid = [POPULATION, "optimizer.lr=0.001,0.01", "seed=1,2,3,4", "trainer.max_epochs=3",
            "data.options.n_samples=300", "logger.log_model=best"]
    here = tmp_path / "here"
    phases = tmp_path / "phases.jsonl"
    hosted = run_cli(["train", "-m", f"paths.output_dir={outputs}", *FAST, *grid], cwd=tmp_path,
                     env={PHASE_FILE_ENV: str(phases)})
    assert hosted.returncode == 0, hosted.stderr[-3000:]
    marks = [name for line in phases.read_text().splitlines() for name in json.loads(line)]
    assert {"population_host_start", "population_writer_start"} <= set(marks), marks
    # The host forks the writer and the plot worker, which start with MLflow and Matplotlib loaded.
    assert marks.count("worker_forked") == (2 if forks_here() else 0), marks
    result = run_cli(["train", "-m", f"paths.output_dir={here}", *FAST, *grid], cwd=tmp_path,
                     env={"EXPERIMENTS_NO_SPEEDUPS": "population_writer,population_host", PHASE_FILE_ENV: str(phases)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert marks == [name for line in phases.read_text().splitlines()[:len(marks)] for name in json.loads(line)]
    later = [name for line in phases.read_text().splitlines()[len(marks):] for name in json.loads(line)]
    assert not {"population_host_start", "population_writer_start", "worker_forked"} & set(later), later
    assert [line for line in hosted.stdout.splitlines() if "run " not in line and "Sweep parent" not in line] == \
        [line for line in result.stdout.splitlines() if "run " not in line and "Sweep parent" not in line]

    files, files_here = _job_files(outputs), _job_files(here)
    assert len(files) == 8 * 3 and set(files) == set(files_here)
    assert files == files_here
    assert "seed=4" in files["7/.hydra/overrides.yaml"] and "task:" in files["7/.hydra/hydra.yaml"]

    client, _, children = parent_and_children(outputs)
    client_here, _, children_here = parent_and_children(here)
    assert len(children) == len(children_here) == 8
    for point, run in by_point(children).items():
        alone = by_point(children_here)[point]
        assert {run.info.status, alone.info.status} == {"FINISHED"}
        assert {k: _masked(v, outputs) for k, v in run.data.params.items()} == \
               {k: _masked(v, here) for k, v in alone.data.params.items()}
        # Each sweep's own parent run and process; the rest (overrides, git, environment, dataset) the same.
        own = ("sweep", "mlflow.parentRunId", "sweep.pid", "sweep.invocation")
        assert {k: _masked(v, outputs) for k, v in run.data.tags.items() if k not in own} \
            == {k: _masked(v, here) for k, v in alone.data.tags.items() if k not in own}
        for path in ("config/config.yaml", "config/overrides.yaml", "data/columns.txt"):
            got = Path(client.download_artifacts(run.info.run_id, path, str(tmp_path / "a" / run.info.run_id)))
            want = Path(client_here.download_artifacts(alone.info.run_id, path, str(tmp_path / "b" / alone.info.run_id)))
            assert _masked(got.read_text(), outputs) == _masked(want.read_text(), here), path
        assert [d.dataset.digest for d in run.inputs.dataset_inputs] == \
               [d.dataset.digest for d in alone.inputs.dataset_inputs]
        assert histories(client, run) == histories(client_here, alone)
        assert len(histories(client, run)["val/loss"]) == 3
        assert bool(run.outputs.model_outputs) == bool(alone.outputs.model_outputs)
        if run.outputs.model_outputs:  # the best member's model shows the scores of its weights' epoch
            linked, linked_here = ({(m.key, m.step, m.value) for m in c.get_logged_model(r.outputs.model_outputs[0].model_id).metrics}
                                   for c, r in ((client, run), (client_here, alone)))
            epoch = int(run.data.metrics["val/loss_best_epoch"])
            assert linked == linked_here and ("val/loss", epoch, run.data.metrics["val/loss_best"]) in linked
    assert sum(bool(run.outputs.model_outputs) for run in children) == 1


def test_a_callback_that_reads_a_jobs_files_as_it_starts_finds_them(tmp_path: Path, outputs: Path) -> None:
    """As Hydra's own `run_job` does, a job's `.hydra` files are on disk before the sweep's callbacks hear
    that it starts, in a population large enough for its files to go to the worker process otherwise."""
    seen = tmp_path / "seen"
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", *FAST, POPULATION, "optimizer.lr=0.001,0.01",
                      "seed=1,2,3,4", "trainer.max_epochs=1", "data.options.n_samples=200", "logger.log_model=false",
                      "+hydra.callbacks.reader._target_=tests.e2e.job_start_reader.JobStartReader",
                      f"+hydra.callbacks.reader.out_dir={seen}"],
                     cwd=tmp_path, env={"PYTHONPATH": str(project_root())})  # `tests` importable by the sweep
    assert result.returncode == 0, result.stderr[-3000:]
    found = {path.name: path.read_text() for path in seen.iterdir()}
    assert sorted(found) == [str(n) for n in range(8)]
    assert all(text != "missing" and "optimizer.lr=" in text for text in found.values()), found


def test_ctrl_c_while_a_population_trains_closes_every_run_killed(tmp_path: Path, outputs: Path) -> None:
    """Ctrl-C reaches the whole terminal's process group — the sweep and the population's worker processes —
    while the members' epoch metrics are going to the writer: every member's run ends KILLED with the
    epochs it trained, none stays RUNNING, and the sweep exits non-zero."""
    process = training_sweep(outputs, tmp_path, "1,2,3,4")
    time.sleep(4)  # epochs whose values the members hand to the writer every 2 s
    os.killpg(process.pid, signal.SIGINT)
    rest = process.communicate(timeout=180)[0]
    assert process.returncode != 0, rest[-2000:]
    client, parent, children = parent_and_children(outputs)
    assert len(children) == 8
    assert {run.info.status for run in children} == {"KILLED"}, rest[-2000:]
    for run in children:
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
        assert len(epochs) > 1 and sorted(epochs) == list(range(len(epochs))), run.info.run_name
    assert parent.info.status != "RUNNING"


def test_a_population_whose_training_process_is_killed_fails_its_jobs_in_one_sentence(
        tmp_path: Path, outputs: Path) -> None:
    """The process a population trains in is killed (out of memory, a user's `kill -9`): each of its jobs
    fails with one sentence saying so, its runs are closed FAILED, none stays RUNNING, no traceback, and the
    sweep exits non-zero instead of hanging."""
    process = training_sweep(outputs, tmp_path, "1,2")
    time.sleep(1)
    # The host: the sweep's child running the same command (the writer and plot workers are its children).
    command = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    (host,) = [int(pid) for pid in children if Path(f"/proc/{pid}/cmdline").read_bytes() == command]
    os.kill(host, signal.SIGKILL)
    rest = process.communicate(timeout=180)[0]
    assert process.returncode != 0, rest[-2000:]
    assert "Traceback" not in rest, rest[-3000:]
    assert "The population's training process was killed (signal 9)" in rest, rest[-2000:]
    _, parent, children_runs = parent_and_children(outputs)
    assert len(children_runs) == 4
    assert {run.info.status for run in children_runs} == {"FAILED"}, rest[-2000:]
    assert parent.info.status == "FAILED"


@pytest.mark.parametrize("speedups_off", ["", "population_host"])
def test_a_job_whose_config_is_refused_fails_alone_in_its_population(
        tmp_path: Path, outputs: Path, speedups_off: str) -> None:
    """A job's config is checked as its member opens (in the host process, or in the sweep's own): a refused
    one fails with its sentence, and the members beside it train and finish."""
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", *FAST, POPULATION, "optimizer.lr=0.01,-1",
                      "seed=1,2", "trainer.max_epochs=2", "logger.log_model=false"], cwd=tmp_path,
                     env={"EXPERIMENTS_NO_SPEEDUPS": speedups_off})
    assert result.returncode != 0
    assert "error: optimizer.lr must be a positive number, got -1." in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    _, parent, children = parent_and_children(outputs)
    assert sorted((run.data.params["optimizer.lr"], run.info.status) for run in children) == \
        [("0.01", "FINISHED"), ("0.01", "FINISHED")]
    assert parent.data.metrics["sweep/failed_jobs"] == 2


def test_sigterm_to_the_sweep_process_alone_closes_every_run_killed(tmp_path: Path, outputs: Path) -> None:
    """`kill PID` of the sweep while its population trains in the host process: the sweep passes the stop
    on, the host closes every member's run KILLED, and the sweep ends non-zero (not after the training)."""
    process = training_sweep(outputs, tmp_path, "1,2")
    time.sleep(1)
    os.kill(process.pid, signal.SIGTERM)
    rest = process.communicate(timeout=180)[0]
    assert process.returncode != 0, rest[-2000:]
    assert "Traceback" not in rest, rest[-3000:]
    _, parent, children = parent_and_children(outputs)
    assert len(children) == 4
    assert {(run.info.status, run.data.tags.get("failure_reason")) for run in children} == {("KILLED", "interrupted")}
    assert parent.info.status == "FAILED"


def test_a_population_sweeps_config_error_does_not_wait_for_its_training_process(
        tmp_path: Path, outputs: Path) -> None:
    """A misspelled override in a population sweep is one sentence and exit 2, as in any sweep: the process
    forked to train the populations, which holds nothing yet, is stopped rather than left to finish loading
    Lightning and torch (seconds) before the command can end."""
    phases = tmp_path / "phases.jsonl"
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", POPULATION, "optimizer.lr=0.1,0.2",
                      "nosuchkey=1"], cwd=tmp_path, env={PHASE_FILE_ENV: str(phases)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == \
        "error: nosuchkey is not a config key; `experiments train --cfg job` lists the keys."
    marks = [name for line in phases.read_text().splitlines() for name in json.loads(line)]
    assert "population_host_start" in marks and "population_host_ready" not in marks, marks
    assert not (outputs / "multiruns").exists()
