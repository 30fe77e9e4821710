"""`experiments train` end to end: a real process, a real sqlite MLflow store in a temp dir."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, run_cli, store_uri

pytestmark = pytest.mark.e2e


def _only_run(outputs: Path):
    client = MlflowClient(store_uri(outputs))
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([e.experiment_id for e in experiments])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def test_seed_experiment_trains_and_logs_one_finished_run(tmp_path: Path, outputs: Path) -> None:
    result = run_cli(["train", f"paths.output_dir={outputs}", "trainer.max_epochs=2", *FAST], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MLflow run:" in result.stdout

    client, run = _only_run(outputs)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "mlp-relu-10x8"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    params = run.data.params
    assert params["model.hidden_dims"] == "[10, 8]"
    assert params["model.activation"] == "relu"
    assert params["optimizer.lr"] == "0.001"
    assert params["data.batch_size"] == "32"
    assert params["model.n_params"] == str(8 * 10 + 10 + 10 * 8 + 8 + 8 + 1)
    assert "None" not in params.values()
    assert run.data.tags["dataset"] == "seed_random" and run.data.tags["task"] == "binary"
    assert run.data.tags["git.commit"] != "" or run.data.tags["git.dirty"] == "unknown"

    # Per-epoch curves stepped by epoch (0, 1), for train and val alike.
    for key in ("train/loss", "val/loss", "val/acc", "gap/loss"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1], key
    assert "val/loss_best" in run.data.metrics and "val/loss_best_epoch" in run.data.metrics
    assert "test/acc" in run.data.metrics

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
    assert {"config/config.yaml", "config/overrides.yaml"} <= artifacts
    config_text = Path(client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path))).read_text()
    assert "hidden_dims" in config_text

    # The logged model loads and predicts a label and class probabilities for each raw row, by column name.
    mlflow.set_tracking_uri(store_uri(outputs))
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    rows = pd.DataFrame(np.random.default_rng(0).random((7, 8)), columns=[f"x{i}" for i in range(8)])
    predicted = model.predict(rows)
    assert list(predicted.columns) == ["prediction", "probability_0", "probability_1"]
    assert set(predicted.prediction) <= {0, 1}
    probabilities = predicted.probability_1.to_numpy()
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert np.allclose(predicted.probability_0 + probabilities, 1)
    # It is filed in the run's experiment and carries the scores of its own weights (the best epoch's).
    (output,) = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.experiment_id == run.info.experiment_id
    assert {m.step for m in logged.metrics} == {int(run.data.metrics["val/loss_best_epoch"])}
    assert {m.key: m.value for m in logged.metrics}["val/loss"] == pytest.approx(run.data.metrics["val/loss_best"])
    # Its environment pins what it needs to load: this torch, scikit-learn, MLflow, and this package.
    import sklearn
    import torch

    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"runs:/{run.info.run_id}/model")).read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements and "experiments" in requirements
    assert any(r.startswith("mlflow==") for r in requirements)
    assert f"scikit-learn=={sklearn.__version__}" in requirements

    # Run dirs land under outputs/runs with checkpoints.
    assert list((outputs / "runs").rglob("last.ckpt"))


def test_nan_loss_fails_the_run_naming_the_first_batch_whose_loss_was_not_finite(tmp_path: Path,
                                                                                 outputs: Path) -> None:
    exploding = ["optimizer=sgd", "optimizer.lr=1e12", "optimizer.momentum=0.9", "model.hidden_dims=[64,64]",
                 *FAST, "trainer.max_epochs=3", "callbacks.nan_guard.check_every=5"]
    result = run_cli(["train", f"paths.output_dir={outputs}", *exploding], cwd=tmp_path)
    assert result.returncode != 0
    assert "lower optimizer.lr" in result.stderr
    assert "Traceback" not in result.stderr
    _, run = _only_run(outputs)
    assert run.info.status == "FAILED"
    match = re.search(r"at epoch 0, batch (\d+) \(the first batch whose loss was not finite\)",
                      run.data.tags["failure_reason"])
    assert match, run.data.tags["failure_reason"]
    first = int(match.group(1))
    # The same seeded run stopped just before that batch trains without a word; with it, it stops there.
    before = run_cli(["train", f"paths.output_dir={tmp_path / 'before'}", *exploding, f"trainer.max_steps={first}"],
                     cwd=tmp_path)
    assert before.returncode == 0, before.stderr[-2000:]
    upto = run_cli(["train", f"paths.output_dir={tmp_path / 'upto'}", *exploding, f"trainer.max_steps={first + 1}"],
                   cwd=tmp_path)
    assert upto.returncode != 0 and f"at epoch 0, batch {first} (" in upto.stderr


@pytest.mark.parametrize(("override", "expected"), [
    ("model.activaton=tanh", "model.activaton is not a config key (did you mean 'activation'?)"),
    ("optimizer.lr=-1", "optimizer.lr must be a positive number"),
])
def test_bad_override_in_a_real_process_gives_one_clear_line_and_exit_2(tmp_path: Path, outputs: Path,
                                                                        override: str, expected: str) -> None:
    """The whole table is in tests/unit/test_bad_overrides.py, in-process; here, the real exit."""
    result = run_cli(["train", f"paths.output_dir={outputs}", *override.split(), *FAST], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (outputs / "runs").exists()


@pytest.mark.parametrize(("switches", "shows_a_bar"), [
    ([], True),
    (["callbacks.progress_bar=null"], False),  # Lightning used to put its own bar in its place
    (["trainer.enable_progress_bar=false"], False),  # Lightning used to refuse this while our bar was set
])
def test_either_progress_switch_alone_turns_the_bar_off(tmp_path: Path, outputs: Path, switches: list[str],
                                                         shows_a_bar: bool) -> None:
    result = run_cli(["train", f"paths.output_dir={outputs}", "trainer.max_epochs=2", "logger=none", *switches],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout + result.stderr
    assert ("Epoch 1" in printed) is shows_a_bar and ("it/s" in printed) is shows_a_bar


def test_help_and_config_errors_do_not_import_torch(tmp_path: Path) -> None:
    """Nor Optuna, which Hydra's plugin scan would load on every start through the sweeper's modules."""
    probe = (
        "import sys\n"
        "from experiments.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_FREE', file=sys.stderr)\n"
        "print('OPTUNA_LOADED' if 'optuna' in sys.modules else 'OPTUNA_FREE', file=sys.stderr)\n"
    )
    import subprocess
    import sys

    outputs = f"paths.output_dir={tmp_path / 'outputs'}"
    for args in (["--help"], ["train", "--help"], ["train", outputs, "model.activation=nope"],
                 ["train", outputs, "model.activaton=tanh"], ["train", "--cfg", "job"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], check=False, cwd=tmp_path, capture_output=True,
                             text=True,
                             timeout=120)
        assert "TORCH_FREE" in out.stderr, (args, out.stderr[-2000:])
        assert "OPTUNA_FREE" in out.stderr, (args, out.stderr[-2000:])


def test_help_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    # As `experiments train --help | head -1`: the reader closes the pipe after its first line.
    process = subprocess.Popen([sys.executable, "-m", "experiments", "train", "--help"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert process.stdout is not None and process.stdout.readline().strip()
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr[-2000:]


def test_shell_completion_completes_config_keys(tmp_path: Path) -> None:
    install = run_cli(["train", "--shell-completion", "install=bash"], cwd=tmp_path)
    assert install.returncode == 0 and "hydra_bash_completion" in install.stdout
    # The installed script calls `experiments -sc query=bash` with the typed line in COMP_LINE.
    line = "experiments train model.act"
    query = run_cli(["-sc", "query=bash"], cwd=tmp_path, env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert "model.activation=" in query.stdout, query.stderr[-2000:]
