"""`experiments eval`: a checkpoint or a run's logged model, on its test split or a CSV; clear refusals."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from experiments.cli import main as cli_main
from experiments.tracking.store import prepare_experiment
from tests.conftest import FAST, run_cli, store_uri

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run on a CSV (binary labels 'no'/'yes'), trained once for every test here."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    table["label"] = np.where(table.a - table.c + 0.5 * rng.normal(size=300) > 0, "yes", "no")
    csv = root / "data.csv"
    table.to_csv(csv, index=False)
    outputs = root / "outputs"
    result = run_cli(["train", f"paths.output_dir={outputs}", *FAST, "trainer.max_epochs=3", "data=csv",
                      f"data.options.path={csv}", "data.options.target=label", "optimizer.lr=0.01"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store_uri(outputs))
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments() if e.name != "Default"])
    (best,) = Path(run.data.tags["run_dir"], "checkpoints").glob("best-*.ckpt")
    return {"root": root, "outputs": outputs, "csv": csv, "table": table, "run": run, "best": best}


def _eval(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["eval", *args])
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def _eval_runs(outputs: Path) -> list:
    client = MlflowClient(store_uri(outputs))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.evaluates != ''", order_by=["attributes.start_time ASC"])
    return runs


def _test_metrics(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}


def test_checkpoint_and_logged_model_give_the_numbers_of_the_training_test_stage(
        trained: dict, capsys: pytest.CaptureFixture) -> None:
    run = trained["run"]
    expected = _test_metrics(run)
    assert set(expected) == {"test/loss", "test/acc", "test/auroc", "test/f1"}

    code, out, err = _eval(capsys, f"ckpt_path={trained['best']}")  # the store comes from the checkpoint
    assert code == 0, err
    assert "test/acc" in out and f"evaluates {run.info.run_id}" in out
    code, out, err = _eval(capsys, f"run_id={run.info.run_id}", f"tracking_uri={store_uri(trained['outputs'])}")
    assert code == 0, err

    from_checkpoint, from_model = _eval_runs(trained["outputs"])
    for evaluation in (from_checkpoint, from_model):
        assert evaluation.data.tags["evaluates"] == run.info.run_id
        assert evaluation.data.tags["eval.data"] == "test split"
        assert evaluation.info.run_name == f"eval-{run.info.run_name}"
        assert _test_metrics(evaluation) == expected
    assert from_checkpoint.data.tags["eval.weights"] == str(trained["best"])
    assert from_model.data.tags["eval.weights"].startswith("model of run")


def test_a_csv_is_scaled_and_labelled_as_the_training_data(trained: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    table = trained["table"]
    same, flipped = tmp_path / "same.csv", tmp_path / "flipped.csv"
    table.to_csv(same, index=False)
    table.assign(label=np.where(table.label == "yes", "no", "yes")).to_csv(flipped, index=False)
    uri = f"tracking_uri={store_uri(trained['outputs'])}"
    run_id = f"run_id={trained['run'].info.run_id}"

    assert _eval(capsys, run_id, uri, f"csv={same}")[0] == 0
    assert _eval(capsys, run_id, uri, f"csv={flipped}", "target=label")[0] == 0
    *_, on_same, on_flipped = _eval_runs(trained["outputs"])
    assert on_same.data.tags["eval.rows"] == "300" and on_same.data.tags["eval.data"] == f"csv {same}"
    # Every prediction that was right is now wrong: only a consistent label mapping gives 1 − accuracy.
    assert on_same.data.metrics["test/acc"] + on_flipped.data.metrics["test/acc"] == pytest.approx(1.0, abs=1e-6)
    # Standardized with the training split's statistics, the model is better than chance on its own data.
    assert on_same.data.metrics["test/acc"] > 0.7


def test_bad_checkpoints_and_unknown_runs_are_one_clear_line(trained: dict, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(trained["best"].read_bytes()[:200])  # a truncated download
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "extra": Path("not a tensor")}, pickled)
    untracked = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2, 2)}}, untracked)
    damaged = tmp_path / "damaged.ckpt"  # a zip archive whose pickle is not one
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr("damaged/data.pkl", "a,b\n1,2\n")
    other_store = tmp_path / "other"
    prepare_experiment(store_uri(other_store), "csv")
    run_id = trained["run"].info.run_id
    checkpoints = trained["best"].parent
    cases = {
        f"ckpt_path={trained['csv']}":
            f"{str(trained['csv'])!r} is not a checkpoint file written by `experiments train` (those are PyTorch zip",
        f"ckpt_path={checkpoints}": f"{str(checkpoints)!r} is a directory, not a checkpoint file; pass a .ckpt file",
        f"ckpt_path={damaged}": f"Checkpoint {str(damaged)!r} is corrupt or not a PyTorch checkpoint",
        f"ckpt_path={corrupt}": f"Checkpoint {str(corrupt)!r} is corrupt or not a PyTorch checkpoint",
        f"ckpt_path={pickled}": "holds Python objects beyond tensors and plain values",
        f"ckpt_path={untracked}": "carries no run config (it was not written by `experiments train`)",
        f"ckpt_path={tmp_path / 'missing.ckpt'}": "does not exist",
        "run_id=0123456789abcdef": "MLflow run '0123456789abcdef' is not in the store",
        "run_id=0123456789abcdef ": "pass the store it was logged to with tracking_uri=…",  # eval's own key
        f"run_id={run_id} csv={tmp_path / 'nope.csv'}":  # named as typed, not as the training's data.options.path
            f"csv={tmp_path / 'nope.csv'}: file {str(tmp_path / 'nope.csv')!r} does not exist.",
        f"run_id={run_id} csv={tmp_path}": f"csv={tmp_path}: that is a directory, not a CSV or Parquet file.",
        f"run_id={run_id} tracking_uri={store_uri(other_store)}":
            f"MLflow run {run_id!r} is not in the store {store_uri(other_store)}",
        f"ckpt_path={trained['best']} tracking_uri={store_uri(other_store)}":
            f"belongs to MLflow run {run_id} of the store {store_uri(trained['outputs'])}, which is not in the store",
        "run_id=": "run_id= is empty; give it a value (run_id=RUN_ID) or leave it out.",
        "model=x": "experiments eval takes key=value arguments with keys run_id, ckpt_path",
    }
    home = f"tracking_uri={store_uri(trained['outputs'])}"  # never the project's own store
    evaluations = len(_eval_runs(trained["outputs"]))
    for args, expected in cases.items():
        if "tracking_uri=" not in args and args != "model=x":
            args = f"{args} {home}"
        code, _, err = _eval(capsys, *args.split())
        assert code == 2, (args, err)
        assert expected in err, (args, err)
        assert len(err.strip().splitlines()) == 1, (args, err)
    assert len(_eval_runs(trained["outputs"])) == evaluations  # a refusal logs no eval run


def test_resume_and_ckpt_path_refuse_what_cannot_continue(trained: dict, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"net.0.weight": torch.zeros(3, 3)}}, foreign)
    outputs = f"paths.output_dir={trained['outputs']}"
    run_id = trained["run"].info.run_id
    cases = {
        f"ckpt_path={foreign}": "was saved from a different model",
        "resume=0123456789abcdef": "MLflow run '0123456789abcdef' is not in the store",
        "resume=0123456789abcdef ": "pass the store it was logged to with logger.tracking_uri=…",  # train's keys
    }
    def refused(args: str) -> str:
        result = run_cli(["train", outputs, *FAST, "data=csv", f"data.options.path={trained['csv']}",
                          "data.options.target=label", *args.split()], cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        return result.stderr

    assert f"MLflow run {run_id} finished; there is nothing to resume" in refused(f"resume={run_id}")
    client = MlflowClient(store_uri(trained["outputs"]))
    client.set_terminated(run_id, "KILLED")  # as if interrupted, to try continuing it with another config
    try:
        cases[f"resume={run_id} model.hidden_dims=[4]"] = (
            f"resume continues run {run_id} with the config it recorded, and these overrides would change it: "
            "model.hidden_dims (recorded [10, 8], given [4])"
        )
        for args, expected in cases.items():
            assert expected in refused(args), args
    finally:
        client.set_terminated(run_id, "FINISHED")
