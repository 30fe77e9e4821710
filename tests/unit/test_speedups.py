"""The speed-ups (`experiments.speedups`): what each one skips, that what matters still happens, and
that each can be switched off."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments.speedups import pause_gc_for_startup, resume_gc_after_startup


def test_exit_still_removes_temporary_folders_and_flushes_output(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import atexit, sys, tempfile
        import torch
        from experiments import cli
        left_open = tempfile.TemporaryDirectory(dir=sys.argv[1])  # cleaned by its exit-time finalizer
        atexit.register(lambda: print("atexit hook ran"))
        print(left_open.name, end=" ")
        from experiments.speedups import exit_fast
        exit_fast(3)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    folder, message = done.stdout.split(" ", 1)
    assert message.strip() == "atexit hook ran"
    assert Path(folder).parent == tmp_path and not Path(folder).exists()


def test_the_normal_exit_can_be_asked_for(tmp_path: Path) -> None:
    """With the off switch the interpreter exits its own way: its module teardown runs (a __del__ at exit)."""
    script = textwrap.dedent("""
        import sys
        from experiments import cli
        class Noisy:
            def __del__(self):
                print("teardown ran")
        keep = Noisy()
        sys.argv = ["experiments", "ui", "--tracking-uri", "http://127.0.0.1:5999"]  # returns at once
        cli.main()
    """)
    switches = [({"EXPERIMENTS_NORMAL_EXIT": "1"}, True), ({"EXPERIMENTS_NORMAL_EXIT": "0"}, False),
                ({"EXPERIMENTS_NO_SPEEDUPS": "gc_pause,fast_exit"}, True), ({"EXPERIMENTS_NO_SPEEDUPS": "all"}, True),
                ({"EXPERIMENTS_NO_SPEEDUPS": "gc_pause"}, False)]
    for switch, expected in switches:
        env = {k: v for k, v in os.environ.items() if k not in ("EXPERIMENTS_NORMAL_EXIT", "EXPERIMENTS_NO_SPEEDUPS")}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              check=False, env={**env, **switch})
        assert ("teardown ran" in done.stdout) is expected, (switch, done.stdout[-500:], done.stderr[-500:])


def test_switched_off_start_up_keeps_collecting_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "gc_pause")
    try:
        pause_gc_for_startup()
        assert gc.isenabled()
    finally:
        resume_gc_after_startup()
        gc.enable()


def _sweep_loader() -> tuple[object, object]:
    """Hydra's own config loader and the composed train config, as a sweep has them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from experiments.paths import config_dir, register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        master = compose("train", return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
    return loader, master


def test_a_jobs_config_is_composed_once_for_the_sweeper_and_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.speedups import cache_sweep_configs

    loader, master = _sweep_loader()
    cache_sweep_configs(loader)
    checked = loader.load_sweep_config(master, ["optimizer.lr=0.1"])  # the sweeper's check of the batch
    other = loader.load_sweep_config(master, ["optimizer.lr=0.2"])
    launched = loader.load_sweep_config(master, ["optimizer.lr=0.1"])  # the launcher, for the same job
    assert launched is checked and launched.optimizer.lr == 0.1 and other.optimizer.lr == 0.2
    # Handed out once: a third composition of those overrides is a new config.
    again = loader.load_sweep_config(master, ["optimizer.lr=0.1"])
    assert again is not launched and again.optimizer == launched.optimizer

    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "sweep_config_cache")
    loader, master = _sweep_loader()
    cache_sweep_configs(loader)
    first = loader.load_sweep_config(master, ["optimizer.lr=0.1"])
    assert loader.load_sweep_config(master, ["optimizer.lr=0.1"]) is not first


def test_a_job_composed_from_a_template_is_the_config_hydra_composes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs that differ from an earlier job only in values get that job's config with their values set:
    the whole config (the `hydra` node, override list and `override_dirname` included) must be what
    Hydra composes for them, and anything else (group choices, `~`, a key set twice) composed by Hydra."""
    from omegaconf import OmegaConf

    from experiments.speedups import cache_sweep_configs

    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "sweep_config_cache")  # every call composes or templates
    loader, master = _sweep_loader()
    hydra_compose = loader.load_sweep_config
    calls: list[list[str]] = []

    def counted(master_config: object, overrides: list[str]) -> object:
        calls.append(list(overrides))
        return hydra_compose(master_config, overrides)

    loader.load_sweep_config = counted
    cache_sweep_configs(loader)
    jobs = [
        ["optimizer.lr=0.1", "seed=1"], ["optimizer.lr=0.2", "seed=2"], ["optimizer.lr=0.3", "seed=3"],
        ["model.hidden_dims=[4,4]", "model.activation=tanh"], ["model.hidden_dims=[3]", "model.activation=relu"],
        ["optimizer=sgd", "optimizer.lr=0.1"], ["optimizer=sgd", "optimizer.lr=0.5"],
        ["optimizer=adamw", "optimizer.lr=0.5"],
        ["+trainer.extra=1"], ["+trainer.extra=2"], ["~optimizer.betas", "seed=4"], ["~optimizer.betas", "seed=5"],
        # The Optuna sweeper's trial link, added to every trial's job.
        ["optimizer.lr=0.01", "++optuna.study_name=s", "++optuna.trial_number=0"],
        ["optimizer.lr=0.02", "++optuna.study_name=s", "++optuna.trial_number=1"],
        ["+trainer.extra=[1,2]", "++trainer.max_epochs=3"], ["+trainer.extra=[3]", "++trainer.max_epochs=4"],
        ["+optimizer.betas=[0.5,0.5]"],
        ["hydra.job.chdir=false", "seed=6"], ["hydra.job.chdir=false", "seed=7"],
        ["seed=8", "seed=9"], ["seed=10", "seed=11"], ["logger.run_id=null"], ["logger.run_id=abc"],
    ]
    for overrides in jobs:
        made = loader.load_sweep_config(master, overrides)
        fresh = hydra_compose(master, overrides)
        assert OmegaConf.to_yaml(made) == OmegaConf.to_yaml(fresh), overrides
        assert made.hydra.job.override_dirname == fresh.hydra.job.override_dirname
    composed_by_hydra = [tuple(c) for c in calls]
    # The second and third of a shape come from the first; a new group choice or a key set twice does not.
    assert ("optimizer.lr=0.2", "seed=2") not in composed_by_hydra
    assert ("model.hidden_dims=[3]", "model.activation=relu") not in composed_by_hydra
    assert ("optimizer=sgd", "optimizer.lr=0.5") not in composed_by_hydra
    assert ("hydra.job.chdir=false", "seed=7") not in composed_by_hydra
    assert ("logger.run_id=abc",) not in composed_by_hydra
    assert ("+trainer.extra=2",) not in composed_by_hydra
    assert ("optimizer.lr=0.02", "++optuna.study_name=s", "++optuna.trial_number=1") not in composed_by_hydra
    assert ("+trainer.extra=[3]", "++trainer.max_epochs=4") not in composed_by_hydra
    assert ("~optimizer.betas", "seed=5") not in composed_by_hydra  # the same deletion, another value
    for composed in [("optimizer=adamw", "optimizer.lr=0.5"), ("~optimizer.betas", "seed=4"), ("seed=10", "seed=11"),
                     ("+optimizer.betas=[0.5,0.5]",)]:
        assert composed in composed_by_hydra
    # A template is never handed out itself: changing a job's config leaves the next job's alone.
    one = loader.load_sweep_config(master, ["optimizer.lr=0.7", "seed=1"])
    one.optimizer.betas = [0.5, 0.5]
    two = loader.load_sweep_config(master, ["optimizer.lr=0.8", "seed=1"])
    assert list(two.optimizer.betas) != [0.5, 0.5]

    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "sweep_config_cache,compose_template")
    loader, master = _sweep_loader()
    calls.clear()
    hydra_compose = loader.load_sweep_config
    loader.load_sweep_config = counted
    cache_sweep_configs(loader)
    loader.load_sweep_config(master, ["seed=1"])
    loader.load_sweep_config(master, ["seed=2"])
    assert calls == [["seed=1"], ["seed=2"]]


def test_a_config_saved_from_its_values_reads_as_omegaconf_writes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's `.hydra/` files and a run's config.yaml, rendered from plain values, must be the text
    `OmegaConf.save` writes: strings YAML would read as another type quoted, interpolations and `???` kept."""
    from omegaconf import OmegaConf

    from experiments.speedups import render_yaml

    loader, master = _sweep_loader()
    job = loader.load_sweep_config(master, ["optimizer.lr=0.1", "seed=3"])
    tricky = {"true": "true", "one": "1", "exp": "1e-3", "null": "null", "none": None, "nan": float("nan"),
              "inf": float("-inf"), "link": "${optimizer.lr}", "missing": "???", "unicode": "µ → ü",
              "multi": "a\nb", "colon": "a: b", 3: [1, 2.5, "3", True, [], {}], "empty": "", "space": " x "}
    hydra_values = OmegaConf.to_container(job.hydra, enum_to_str=True)  # its `mode` is an enum, as text
    task = OmegaConf.masked_copy(job, [str(key) for key in job if key != "hydra"])
    for values in (OmegaConf.to_container(task), hydra_values, list(job.hydra.overrides.task), tricky):
        expected = OmegaConf.to_yaml(OmegaConf.create(values))
        assert render_yaml(values) == expected
    # Anything but plain values (here an enum) goes OmegaConf's own way, and so does everything when off.
    from hydra.types import RunMode

    assert render_yaml({"mode": RunMode.RUN}) == OmegaConf.to_yaml(OmegaConf.create({"mode": RunMode.RUN}))
    monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "yaml_render")
    assert render_yaml(tricky) == OmegaConf.to_yaml(OmegaConf.create(tricky))
