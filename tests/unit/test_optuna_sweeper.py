"""The `experiments_optuna` Hydra sweeper, driven the way users drive it: a real Hydra app run as a
subprocess with `-m hydra/sweeper=experiments_optuna`, a real sqlite Optuna storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hydra_plugins.experiments_optuna_sweeper import optuna_summary_files
from hydra_plugins.experiments_optuna_sweeper._search_space import (
    format_value,
    grid_values,
    parse_search_space,
    quote,
)
from hydra_plugins.experiments_optuna_sweeper.errors import SweeperConfigError

SRC = Path(__file__).resolve().parents[2] / "src"

APP = """
import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig):
    x = float(cfg.x)
    if cfg.mode == "fail_above" and x > cfg.threshold:
        raise ValueError(f"x={x} is above the threshold")
    if cfg.mode == "nan_above" and x > cfg.threshold:
        return float("nan")
    if cfg.mode == "always_fail":
        raise RuntimeError("this job always fails")
    if cfg.mode == "multi":
        return [(x - 2.0) ** 2, (x + 2.0) ** 2]
    if cfg.mode == "report":
        from hydra_plugins.experiments_optuna_sweeper import TrialLink, report_and_check

        trial = TrialLink.from_config(cfg.optuna).open_trial()
        for step in range(5):
            report_and_check(trial, (x - 2.0) ** 2 + 1.0 / (step + 1), step)
    if cfg.mode == "slow":
        time.sleep(0.3)
    if cfg.mode == "sleep":
        time.sleep(cfg.sleep_s)
    return (x - 2.0) ** 2


if __name__ == "__main__":
    main()
"""

CONFIG = """
defaults:
  - override hydra/sweeper: experiments_optuna
  - _self_
x: 0.0
mode: quadratic
threshold: 50.0
sleep_s: 0.0
hydra:
  sweeper:
    seed: 1
    n_trials: 6
    params:
      x: interval(-5.0, 5.0)
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "config.yaml").write_text(CONFIG)
    return tmp_path


def run_sweep(app: Path, *overrides: str, sweep_dir: str = "sweep") -> subprocess.CompletedProcess[str]:
    proc = start_sweep(app, *overrides, sweep_dir=sweep_dir)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start_sweep(app: Path, *overrides: str, sweep_dir: str = "sweep") -> subprocess.Popen[str]:
    # The plugin is found through PYTHONPATH=src, as with an editable install.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(app / "app.py"), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]
    return subprocess.Popen(cmd, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load(app: Path, name: str = "app") -> optuna.Study:
    # The default storage: an absolute sqlite path under <cwd>/outputs, whatever dir the jobs run in.
    return optuna.load_study(study_name=name, storage=f"sqlite:///{app / 'outputs' / 'optuna.db'}")


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


# --- search space (in process) ---------------------------------------------------------------


def test_search_space_syntax_maps_to_optuna_distributions() -> None:
    space = parse_search_space(
        [
            "a=choice(relu, tanh)",
            "b=1,2,3",
            "c=range(1, 5)",
            "d=interval(0.0, 1.0)",
            "e=tag(log, interval(1e-4, 1e-1))",
            "f=int(interval(1, 8))",
            "i=tag(log, int(interval(1, 64)))",
            "g=7",
            "+h=fixed",
        ]
    )
    d = space.distributions
    assert d["a"] == optuna.distributions.CategoricalDistribution(["relu", "tanh"])
    assert d["b"] == optuna.distributions.CategoricalDistribution([1, 2, 3])
    # range includes its upper end, as in hydra-optuna-sweeper
    assert d["c"] == optuna.distributions.IntDistribution(1, 5, step=1)
    assert d["d"] == optuna.distributions.FloatDistribution(0.0, 1.0)
    assert d["e"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d["f"] == optuna.distributions.IntDistribution(1, 8)
    assert d["i"] == optuna.distributions.IntDistribution(1, 64, log=True)
    assert space.fixed == {"g": "g=7", "+h": "+h=fixed"}
    assert grid_values("c", d["c"]) == [1, 2, 3, 4, 5]
    # a later override of a key (command line after hydra.sweeper.params) replaces the earlier one
    assert parse_search_space(["x=interval(0, 1)", "x=3"]).fixed == {"x": "x=3"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("x=interval(0.0", "Invalid Optuna search space"),
        ("x=tag(lgo, interval(0.1, 1.0))", "Unknown tag"),
        ("x=tag(log, interval(-1.0, 1.0))", "Invalid Optuna search space for 'x'"),
        ("x=glob(*)", "Unsupported sweep for 'x'"),
    ],
)
def test_invalid_search_space_is_one_clear_error(override: str, message: str) -> None:
    with pytest.raises(SweeperConfigError, match=message):
        parse_search_space([override])


def test_grid_rejects_continuous_parameters() -> None:
    space = parse_search_space(["x=interval(0.0, 1.0)"])
    with pytest.raises(SweeperConfigError, match="grid needs discrete parameters"):
        grid_values("x", space.distributions["x"])


def test_sampled_values_and_urls_survive_hydra_override_parsing() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for value in [None, True, 0.1, 1e-5, 3, "[64,64]"]:
        parsed = parser.parse_override(f"k={format_value(value)}").value()
        assert parsed == ([64, 64] if value == "[64,64]" else value)
    url = "sqlite:////tmp/a dir,with=odd 'chars'\\/optuna.db"
    assert parser.parse_override(f"k={quote(url)}").value() == url


# --- sweeps through Hydra ----------------------------------------------------------------------


def test_sweep_persists_study_passes_trial_identity_and_writes_summary(app: Path) -> None:
    ok(run_sweep(app, sweep_dir="first"))
    study = load(app)
    assert states(study) == ["COMPLETE"] * 6

    # each job was told which trial it is, with the absolute storage URL
    overrides = yaml.safe_load((app / "first" / "3" / ".hydra" / "overrides.yaml").read_text())
    assert "++optuna.trial_number=3" in overrides
    assert f"++optuna.storage='sqlite:///{app / 'outputs' / 'optuna.db'}'" in overrides
    x3 = next(o for o in overrides if o.startswith("x="))
    assert float(x3[2:]) == study.trials[3].params["x"]

    sweep = app / "first"
    names = {p.name for p in optuna_summary_files(sweep)}
    assert names == {
        "optimization_results.yaml",
        "optuna_summary.json",
        "optuna_history.png",
        "optuna_importances.png",
    }
    summary = json.loads((sweep / "optuna_summary.json").read_text())
    assert summary["trials_by_state"] == {"COMPLETE": 6}
    assert summary["best"]["value"] == pytest.approx(study.best_value)
    assert summary["best"]["params"] == study.best_params
    assert summary["param_importances"] == {"x": pytest.approx(1.0)}
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)
    assert (sweep / "optuna_history.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_rerun_resumes_study_and_seed_reproduces_trials(app: Path) -> None:
    ok(run_sweep(app, sweep_dir="first"))
    ok(run_sweep(app, sweep_dir="second"))
    study = load(app)
    assert [t.number for t in study.trials] == list(range(12))
    assert states(study) == ["COMPLETE"] * 12
    assert json.loads((app / "second" / "optuna_summary.json").read_text())["n_trials"] == 12
    # job dirs are numbered by trial, so a resumed sweep does not reuse the first run's numbers
    assert sorted(int(p.name) for p in (app / "second").iterdir() if p.is_dir()) == list(range(6, 12))
    # the resumed invocation does not replay the first one's proposals (same seed, offset by study size)
    assert not {t.params["x"] for t in study.trials[:6]} & {t.params["x"] for t in study.trials[6:]}

    # the same sampler seed in a fresh study proposes the same trials
    ok(run_sweep(app, "hydra.sweeper.study_name=replica", sweep_dir="replica"))
    first_six = [t.params["x"] for t in study.trials[:6]]
    assert [t.params["x"] for t in load(app, "replica").trials] == first_six


@pytest.mark.parametrize("mode", ["fail_above", "nan_above"])
def test_failed_trial_is_recorded_and_sweep_goes_on(app: Path, mode: str) -> None:
    # 100.0 is a search-space value that makes the job fail: only that trial fails
    ok(
        run_sweep(
            app,
            f"mode={mode}",
            "hydra.sweeper.sampler=grid",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.params.x='choice(-1.0, 3.0, 100.0)'",
        )
    )
    trials = {t.params["x"]: t for t in load(app).trials}
    assert sorted(trials) == [-1.0, 3.0, 100.0]
    assert trials[100.0].state == TrialState.FAIL
    assert trials[-1.0].state == trials[3.0].state == TrialState.COMPLETE
    reason = trials[100.0].user_attrs["fail_reason"]
    assert ("ValueError" in reason) if mode == "fail_above" else ("NaN" in reason)


def test_too_many_failures_stop_the_sweep_with_one_sentence(app: Path) -> None:
    result = run_sweep(
        app, "mode=always_fail", "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.25"
    )
    assert result.returncode != 0
    assert "Optuna sweep stopped: 2 of 2 trials failed" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.split("Optuna sweep stopped")[-1]
    # stopped as soon as the rate was bound to be exceeded, not after all 4 trials
    assert states(load(app)) == ["FAIL", "FAIL"]
    assert json.loads((app / "sweep" / "optuna_summary.json").read_text())["trials_by_state"] == {"FAIL": 2}


def test_invalid_search_space_in_config_stops_before_any_trial(app: Path) -> None:
    result = run_sweep(app, "hydra.sweeper.params.x='tag(lgo, interval(0.1, 1.0))'")
    assert result.returncode != 0
    assert "Unknown tag ['lgo'] on 'x'; the only supported tag is 'log'." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (app / "outputs" / "optuna.db").exists() or load(app).trials == []


def test_unknown_sampler_and_missing_cmaes_are_clear_errors(app: Path) -> None:
    result = run_sweep(app, "hydra.sweeper.sampler=bogus")
    assert result.returncode != 0
    assert "hydra.sweeper.sampler must be one of tpe, random, grid, cmaes, got 'bogus'." in result.stderr
    try:
        import cmaes  # noqa: F401
    except ImportError:
        result = run_sweep(app, "hydra.sweeper.sampler=cmaes")
        assert result.returncode != 0
        assert "needs the 'cmaes' package" in result.stderr


@pytest.mark.e2e
def test_grid_sampler_stops_when_the_grid_is_exhausted(app: Path) -> None:
    grid = ("hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=10", "hydra.sweeper.params.x='range(1, 3)'")
    ok(run_sweep(app, *grid))
    ok(run_sweep(app, *grid, sweep_dir="again"))
    assert sorted(t.params["x"] for t in load(app).trials) == [1, 2, 3]


@pytest.mark.e2e
def test_a_seeded_grid_resumed_runs_each_point_once(app: Path) -> None:
    # The seed orders the grid: resuming with another seed would run points of the first batch again.
    grid = ("hydra.sweeper.sampler=grid", "hydra.sweeper.seed=0", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.params.x='range(1, 6)'")
    ok(run_sweep(app, *grid))
    ok(run_sweep(app, *grid, sweep_dir="again"))
    assert sorted(t.params["x"] for t in load(app).trials) == [1, 2, 3, 4, 5, 6]


@pytest.mark.e2e
def test_job_raising_trial_pruned_is_recorded_pruned(app: Path) -> None:
    pruning = ("mode=report", "hydra.sweeper.pruner=median", "hydra.sweeper.n_startup_trials=2")
    # two good trials set the median learning curve ...
    ok(run_sweep(app, *pruning, "x=2.0", "hydra.sweeper.n_trials=2"))
    # ... a clearly bad one is pruned at its first report and the sweep still succeeds
    ok(run_sweep(app, *pruning, "x=100.0", "hydra.sweeper.n_trials=1", sweep_dir="bad"))
    good0, good1, bad = load(app).trials
    assert good0.state == good1.state == TrialState.COMPLETE
    assert sorted(good0.intermediate_values) == [0, 1, 2, 3, 4]
    assert bad.state == TrialState.PRUNED
    assert sorted(bad.intermediate_values) == [0]
    assert json.loads((app / "bad" / "optuna_summary.json").read_text())["this_invocation"]["pruned"] == 1


def test_multi_objective_writes_pareto_front(app: Path) -> None:
    ok(
        run_sweep(
            app, "mode=multi", "hydra.sweeper.direction=[minimize,minimize]", "hydra.sweeper.sampler=random"
        )
    )
    study = load(app)
    assert len(study.directions) == 2 and states(study) == ["COMPLETE"] * 6
    summary = json.loads((app / "sweep" / "optuna_summary.json").read_text())
    front = summary["pareto_front"]
    assert {t["number"] for t in front} == {t.number for t in study.best_trials}
    assert all(len(t["values"]) == 2 for t in front)
    results = yaml.safe_load((app / "sweep" / "optimization_results.yaml").read_text())
    assert len(results["solutions"]) == len(front)
    assert (app / "sweep" / "optuna_pareto_front.png").is_file()


@pytest.mark.e2e
def test_resuming_with_other_directions_is_refused(app: Path) -> None:
    ok(run_sweep(app, "hydra.sweeper.n_trials=1"))
    result = run_sweep(app, "hydra.sweeper.direction=maximize", sweep_dir="again")
    assert result.returncode != 0
    assert "optimizes ['minimize'], but hydra.sweeper.direction is ['maximize']" in result.stderr


def run_two_workers(app: Path, *overrides: str) -> None:
    """The same sweep started twice at once (seeds 0 and 1) against one storage; both must succeed."""
    workers = [start_sweep(app, *overrides, f"hydra.sweeper.seed={i}", sweep_dir=f"w{i}") for i in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


@pytest.mark.e2e
def test_two_concurrent_workers_share_one_study(app: Path) -> None:
    common = (
        "mode=slow",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.sampler=random",
    )
    run_two_workers(app, *common)
    trials = load(app).trials
    assert [t.number for t in trials] == list(range(8))  # 4 + 4, no trial run twice
    assert states(load(app)) == ["COMPLETE"] * 8
    assert len({t.params["x"] for t in trials}) == 8
    for i in range(2):  # each worker added its own n_trials
        assert (
            json.loads((app / f"w{i}" / "optuna_summary.json").read_text())["this_invocation"]["complete"]
            == 4
        )


def _wait_until_a_trial_runs(app: Path, proc: subprocess.Popen[str]) -> None:
    """Until a trial is RUNNING and has its first heartbeat (recorded before its job is launched)."""
    import sqlite3

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if (app / "outputs" / "optuna.db").exists():
            try:
                with sqlite3.connect(app / "outputs" / "optuna.db") as db:
                    beating = db.execute("SELECT count(*) FROM trial_heartbeats").fetchone()[0]
                if beating and "RUNNING" in states(load(app)):
                    return
            except (KeyError, sqlite3.OperationalError):  # the study or its tables are not created yet
                pass
        time.sleep(0.2)
    raise AssertionError("no trial started within 120 s")


@pytest.mark.e2e
def test_trials_of_a_killed_sweep_are_failed_by_the_next_one(app: Path) -> None:
    """SIGKILL leaves no chance to tell the study anything: the trial stops beating, and the next
    sweep on the study marks it FAIL instead of leaving it RUNNING forever."""
    killed = start_sweep(app, "mode=sleep", "sleep_s=600", "hydra.sweeper.n_trials=1",
                         "hydra.sweeper.heartbeat_interval=1")
    _wait_until_a_trial_runs(app, killed)
    killed.kill()
    killed.communicate(timeout=60)
    assert states(load(app)) == ["RUNNING"]
    time.sleep(3.5)  # past the grace period of 3 heartbeat intervals
    result = ok(run_sweep(app, "hydra.sweeper.n_trials=2", "hydra.sweeper.heartbeat_interval=1", sweep_dir="again"))
    assert states(load(app)) == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "Trial 0 was RUNNING without a heartbeat (its sweep stopped): marked FAIL." in result.stderr + result.stdout


@pytest.mark.e2e
def test_a_running_sweep_keeps_its_trials_alive_while_another_sweeps_the_study(app: Path) -> None:
    """Heartbeats tell a live sweep's long trial (here 8 s, 8 intervals) from a dead one."""
    slow = start_sweep(app, "mode=sleep", "sleep_s=8", "hydra.sweeper.n_trials=1", "hydra.sweeper.heartbeat_interval=1",
                       sweep_dir="slow")
    _wait_until_a_trial_runs(app, slow)
    time.sleep(4)  # longer than the grace period: only the heartbeats keep the trial RUNNING
    ok(run_sweep(app, "hydra.sweeper.n_trials=1", "hydra.sweeper.heartbeat_interval=1", sweep_dir="quick"))
    _, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err[-3000:]
    assert states(load(app)) == ["COMPLETE", "COMPLETE"]


def test_a_negative_heartbeat_interval_is_one_clear_error(app: Path) -> None:
    result = run_sweep(app, "hydra.sweeper.heartbeat_interval=-1")
    assert result.returncode != 0
    assert "hydra.sweeper.heartbeat_interval must be a whole number of seconds >= 0 (0: off)." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_total_trials_bounds_the_study_across_workers(app: Path) -> None:
    common = (
        "mode=slow",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.total_trials=5",
        "hydra.sweeper.sampler=random",
    )
    run_two_workers(app, *common)
    assert states(load(app)) == ["COMPLETE"] * 5


# --- the Lightning pruning callback against a real sqlite study ---------------------------------


def _fake_trainer(metrics: dict[str, float], epoch: int, sanity: bool = False) -> SimpleNamespace:
    import torch

    return SimpleNamespace(
        sanity_checking=sanity,
        is_global_zero=True,
        current_epoch=epoch,
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
        strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj),
    )


def test_optuna_pruning_callback_prunes_a_clearly_bad_trial(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    from experiments.callbacks.pruning import OptunaPruning
    from hydra_plugins.experiments_optuna_sweeper._study import create_or_load_study, pruner_settings

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = create_or_load_study(
        url, "s", ["minimize"], optuna.samplers.RandomSampler(seed=0), pruner_settings("median", 2, 1)
    )
    for _ in range(2):  # two finished trials with a good learning curve
        trial = study.ask()
        for epoch in range(3):
            trial.report(1.0 / (epoch + 1), epoch)
        study.tell(trial, 0.3)

    bad, good = study.ask(), study.ask()
    bad_cb = OptunaPruning("val/loss", url, "s", bad.number)
    good_cb = OptunaPruning("val/loss", url, "s", good.number)

    bad_cb.on_validation_end(_fake_trainer({"val/loss": 1e6}, 0, sanity=True), None)  # type: ignore[arg-type]
    bad_cb.on_validation_end(_fake_trainer({"val/loss": 1e6}, 0), None)  # type: ignore[arg-type]  # warm-up
    good_cb.on_validation_end(_fake_trainer({"val/loss": 0.1}, 1), None)  # type: ignore[arg-type]
    with pytest.raises(optuna.TrialPruned, match="pruned at step 1"):
        bad_cb.on_validation_end(_fake_trainer({"val/loss": 1e6}, 1), None)  # type: ignore[arg-type]

    trials = optuna.load_study(study_name="s", storage=url).trials
    assert trials[bad.number].intermediate_values == {0: 1e6, 1: 1e6}  # sanity-check epoch not reported
    assert trials[good.number].intermediate_values == {1: pytest.approx(0.1)}

    with pytest.raises(RuntimeError, match="monitors 'val/loss', which was not logged"):
        good_cb.on_validation_end(_fake_trainer({"train/loss": 0.1}, 2), None)  # type: ignore[arg-type]
