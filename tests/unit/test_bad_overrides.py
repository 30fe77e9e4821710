"""Every kind of bad override gives one clear sentence, exit status 2, and leaves nothing behind: no run
folder, no MLflow run. Run in-process through the CLI's own entry (`cli.main`), since composing and
refusing need no process of their own; tests/e2e/test_train_cli.py checks a real process's exit."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, store_uri


def _train_refused(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    from experiments import cli, hydra_errors

    # The CLI sets these for its own process; noted here so they are put back (absent) afterwards.
    for name in (cli.SUBCOMMAND_ENV, hydra_errors.FULL_ERROR_ENV, hydra_errors.SENTENCES_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "argv", ["experiments"])
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    try:
        cli.main(["train", *args])
        code: object = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        gc.enable()  # the CLI paused collection for a start-up that never came
        GlobalHydra.instance().clear()
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.activation=relux", "model.activation='relux' is not known; choose one of: relu, tanh"),
        ("optimizer=adamm", "optimizer=adamm is not known (did you mean 'adam'?)"),
        ("optimizer._target_=torch.optim.Adamm", "optimizer._target_='torch.optim.Adamm' is not a torch.optim optimizer"),
        ("optimizer=sgd +optimizer.betas=[0.9,0.99]", "optimizer.betas is not an argument of torch.optim.SGD; its arguments"),
        ("optimizer.lr=-1", "optimizer.lr must be a positive number"),
        ("model.dropout=1.5", "model.dropout must be a number in [0, 1)"),
        ("model.hidden_dims=[10,0]", "model.hidden_dims must be a list of positive integers"),
        ("data.split.train=0.9", "data.split fractions must be"),
        ("model.input_dim=5", "model.input_dim=5 disagrees with the data, which has 8 features"),
        # Mistakes Hydra itself finds while composing the config.
        ("model.activaton=tanh", "model.activaton is not a config key (did you mean 'activation'?)"),
        ("trainer.max_epocs=2", "trainer.max_epocs is not a config key (did you mean 'max_epochs'?)"),
        ("model=wid", "model=wid is not known (did you mean 'wide'?); choose one of: seed_mlp, wide."),
        ("model.hidden_dims=[64", "could not parse the override 'model.hidden_dims=[64'"),
        ("data=csv", "data.options.path has no value; set it"),
        ("sweep=optuna hydra.sweeper.n_trials=null",
         "hydra.sweeper.n_trials cannot be null: give it a value (experiments train --cfg hydra shows the current one)."),
        # Sweep syntax without -m: how to sweep, or how to mean one value.
        ("optimizer.lr=0.01,0.1", ("optimizer.lr=0.01,0.1 gives several values: add -m to sweep over them, "
                                   "write optimizer.lr=[0.01,0.1] for a list")),
        ("optimizer.lr=interval(0.001,0.1)", "optimizer.lr=interval(0.001,0.1) is a sweep: add -m to run it"),
        # Values of the wrong kind, found before any run is recorded.
        ("+model.activaton=tanh", "model.activaton is not a model option; the options are: input_dim,"),
        ("model.hidden_dims=64", "model.hidden_dims must be a list of positive integers, e.g. [64,32]"),
        ("model.dropout=abc", "model.dropout must be a number in [0, 1), got 'abc'."),
        ("seed=abc", "seed must be a whole number, got 'abc'."),
        ("threads=-1", "threads must be a positive whole number or 'auto', got -1."),
        ("trainer.max_epochs=two", "trainer.max_epochs must be a positive whole number (or -1 for no limit)"),
        ("scheduler=step scheduler.step_size=abc", "scheduler.step_size must be a whole number of epochs"),
        ("model.init=normal model.init_std=abc", "model.init_std must be a positive number, got 'abc'."),
        ("monitor=val/los", "monitor='val/los' is not a metric of a binary task; choose one of: val/loss,"),
        ("data=diabetes monitor=val/acc", "monitor='val/acc' is not a metric of a regression task"),
        ("logger.tracking_uri=htp://localhost:5000", "logger.tracking_uri='htp://localhost:5000' is not a store"),
        # An empty value is a slip: never a fresh run from scratch.
        ("resume=", "resume= is empty; give it a value (resume=RUN_ID) or leave it out."),
        ("ckpt_path=", "ckpt_path= is empty; give it a value (ckpt_path=PATH) or leave it out."),
        ("log_checkpoints=some", "log_checkpoints='some' is not known; choose one of: none, best, last, all."),
        ("paths.output_dir=/proc/nope", "No such file or directory: '/proc/nope'; paths.output_dir=… sets"),
        # A data module's own refusal, not wrapped in Hydra's instantiation error.
        ("data=csv data.options.path=missing.csv data.options.target=y",
         "data.options.path=missing.csv: file 'missing.csv' does not exist."),
    ],
)
def test_bad_override_gives_one_clear_line_and_logs_nothing(tmp_path: Path, outputs: Path, override: str,
                                                           expected: str, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = _train_refused([f"paths.output_dir={outputs}", *override.split(), *FAST], tmp_path,
                                  monkeypatch, capsys)
    assert code == 2, stderr[-2000:]
    assert expected in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (outputs / "runs").exists()  # not even Hydra's folder for a run that never started
    if (outputs / "mlflow.db").exists():
        client = MlflowClient(store_uri(outputs))
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
