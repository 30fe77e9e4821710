"""A user's own messy table end to end: train, then the logged model, `eval`, `predict` and
`mlflow models serve` all take raw rows by column name and agree with the training's test stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from experiments.tracking.lookup import recorded_config
from tests.conftest import FAST, free_port, run_cli, store_uri, wait_for_http
from tests.tables import messy_table

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run on the messy table (CSV), trained once for every test here."""
    root = tmp_path_factory.mktemp("own_table")
    table = messy_table(400)
    table.loc[7, "label"] = None  # a row without a label: left out with a note
    csv = root / "customers.csv"
    table.to_csv(csv, index=False)
    outputs = root / "outputs"
    result = run_cli(["train", f"paths.output_dir={outputs}", *FAST, "trainer.max_epochs=15", "data=csv",
                      f"data.options.path={csv}", "data.options.target=label", "optimizer.lr=0.01",
                      "model.hidden_dims=[16]"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store_uri(outputs))
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments() if e.name != "Default"])
    return {"root": root, "outputs": outputs, "csv": csv, "table": table, "run": run, "client": client,
            "stdout": result.stdout, "stderr": result.stderr, "uri": store_uri(outputs)}


def _test_rows(trained: dict) -> tuple[pd.DataFrame, object]:
    """The run's own test rows, raw, rebuilt from its recorded config (the split is deterministic)."""
    cfg = recorded_config(trained["client"], trained["run"])
    datamodule = instantiate(cfg.data, _convert_="all")
    return datamodule.frame.iloc[datamodule.rows["test"]].reset_index(drop=True), datamodule


def _shuffled(frame: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    columns = list(frame.columns)
    np.random.default_rng(seed).shuffle(columns)
    return frame[columns].assign(notes="an extra column the model does not read")


def test_the_roles_are_printed_before_training_and_logged_with_the_run(trained: dict) -> None:
    out = trained["stdout"]
    assert "note: 1 row with an empty target 'label' left out" in out
    for line in ("Unnamed: 0   dropped      a saved pandas index", "country      dropped      constant",
                 "signup       datetime", "label        target       binary, positive class 'buyer'"):
        assert line in out, out
    assert out.index("customer_id  dropped      ID-like") < out.index("val/loss")  # before the run's summary
    assert "Tip:" not in out + trained["stderr"]  # no third-party advertisement in the console
    client, run = trained["client"], trained["run"]
    logged = Path(client.download_artifacts(run.info.run_id, "data/columns.txt", str(trained["root"]))).read_text()
    assert "colour       categorical" in logged
    (dataset_input,) = run.inputs.dataset_inputs
    schema = json.loads(dataset_input.dataset.schema)["mlflow_colspec"]
    assert [column["name"] for column in schema] == list(trained["table"].columns)


def test_the_logged_model_predicts_raw_rows_in_any_column_order_as_the_test_stage_scored_them(
        trained: dict) -> None:
    rows, datamodule = _test_rows(trained)
    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{trained['run'].info.run_id}/model")
    predicted = model.predict(_shuffled(rows))
    assert list(predicted.columns) == ["prediction", "probability_browser", "probability_buyer"]
    # The same probabilities as the trained net on the test stage's own (preprocessed) inputs …
    net = model.unwrap_python_model().net
    with torch.no_grad():
        stage = torch.sigmoid(net(datamodule.tensors("test").tensors[0])).squeeze(-1).numpy()
    assert np.allclose(predicted.probability_buyer.to_numpy(), stage, atol=1e-6)
    # … so the run's logged test scores follow from the raw rows and their original labels.
    metrics = trained["run"].data.metrics
    accuracy = float((predicted.prediction == rows.label).mean())
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert accuracy > 0.7  # it learned something: the comparison is not between two constant outputs
    truth = (rows.label == "buyer").to_numpy()
    p = np.clip(predicted.probability_buyer.to_numpy(), 1e-7, 1 - 1e-7)
    assert float(-np.mean(truth * np.log(p) + (~truth) * np.log(1 - p))) == pytest.approx(metrics["test/loss"],
                                                                                          abs=1e-4)
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"missing inputs \['age'\]"):
        model.predict(rows.drop(columns=["age"]))


def test_mlflow_models_serve_answers_a_json_request_of_raw_rows(trained: dict) -> None:
    rows, _ = _test_rows(trained)
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the server starts uvicorn from the environment's bin
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"], "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", f"runs:/{trained['run'].info.run_id}/model",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, 120)
        sample = _shuffled(rows.head(12)).drop(columns=["label"])
        body = json.dumps({"dataframe_records": json.loads(sample.to_json(orient="records"))}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())["predictions"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    mlflow.set_tracking_uri(trained["uri"])
    expected = mlflow.pyfunc.load_model(f"runs:/{trained['run'].info.run_id}/model").predict(rows.head(12))
    assert [a["prediction"] for a in answer] == expected.prediction.tolist()
    assert {a["prediction"] for a in answer} <= {"buyer", "browser"}
    assert np.allclose([a["probability_buyer"] for a in answer], expected.probability_buyer, atol=1e-6)


def _cli(trained: dict, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_cli([*args, f"tracking_uri={trained['uri']}"], cwd=trained["root"], env=env)


def _eval_runs(trained: dict) -> list:
    client = trained["client"]
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.evaluates != ''", order_by=["attributes.start_time ASC"])


def test_eval_matches_columns_by_name_or_refuses(trained: dict, tmp_path: Path) -> None:
    rows, _ = _test_rows(trained)
    run_id = trained["run"].info.run_id
    reordered = tmp_path / "reordered.csv"
    _shuffled(rows).to_csv(reordered, index=False)
    result = _cli(trained, "eval", f"run_id={run_id}", f"csv={reordered}")
    assert result.returncode == 0, result.stderr[-2000:]
    (evaluation,) = _eval_runs(trained)
    assert evaluation.info.status == "FINISHED"
    for key in ("test/acc", "test/loss", "test/auroc", "test/f1"):
        assert evaluation.data.metrics[key] == pytest.approx(trained["run"].data.metrics[key], abs=1e-5), key

    upper = tmp_path / "upper.csv"
    rows.rename(columns=str.upper).to_csv(upper, index=False)
    swapped = tmp_path / "swapped.csv"
    rows.drop(columns=["income"]).assign(revenue=rows.income).to_csv(swapped, index=False)
    cases = {upper: "lacks the columns the model reads: age, colour, member, signup, income (columns are matched",
             swapped: "CSV 'swapped.csv' lacks the column the model reads: income (columns are matched by name)."}
    for path, message in cases.items():
        refused = _cli(trained, "eval", f"run_id={run_id}", f"csv={path}")
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr[-2000:]
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert len(_eval_runs(trained)) == 1  # a refusal records no eval run


def test_predict_writes_the_rows_with_their_labels_and_probabilities(trained: dict, tmp_path: Path) -> None:
    rows, _ = _test_rows(trained)
    run_id = trained["run"].info.run_id
    source = tmp_path / "new_customers.parquet"  # Parquet in, keeps its types (dates as timestamps too)
    fresh = _shuffled(rows).drop(columns=["label"])
    fresh.assign(signup=pd.to_datetime(fresh.signup)).to_parquet(source)
    target = tmp_path / "scored.csv"
    result = _cli(trained, "predict", f"run_id={run_id}", f"input={source}", f"output={target}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Predicted {len(rows)} rows with the model of run {run_id}: {target}" in result.stdout
    scored = pd.read_csv(target)
    assert list(scored.columns) == [*fresh.columns, "prediction", "probability_browser", "probability_buyer"]
    assert scored.customer_id.tolist() == fresh.customer_id.tolist()  # the input's rows, in its order
    mlflow.set_tracking_uri(trained["uri"])
    expected = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(rows)
    assert scored.prediction.tolist() == expected.prediction.tolist()
    assert np.allclose(scored.probability_buyer, expected.probability_buyer, atol=1e-6)

    # Without output=: a CSV under the project's outputs/predictions, named after the input and the run.
    home = tmp_path / "project"
    defaulted = _cli(trained, "predict", f"run_id={run_id}", f"input={source}", env={"EXPERIMENTS_ROOT": str(home)})
    assert defaulted.returncode == 0, defaulted.stderr[-2000:]
    written = home / "outputs" / "predictions" / f"new_customers-{run_id[:8]}.csv"
    assert pd.read_csv(written).prediction.tolist() == expected.prediction.tolist()

    lacking = tmp_path / "lacking.csv"
    rows.drop(columns=["signup"]).to_csv(lacking, index=False)
    refused = _cli(trained, "predict", f"run_id={run_id}", f"input={lacking}", f"output={tmp_path / 'no.csv'}")
    assert refused.returncode == 2
    assert "error: input 'lacking.csv' lacks the column the model reads: signup" in refused.stderr
    assert not (tmp_path / "no.csv").exists()


def test_a_regression_target_is_learned_in_standardized_units_and_scored_in_its_own(compose_cfg) -> None:
    import io
    from contextlib import redirect_stdout

    from experiments.train import train

    with redirect_stdout(io.StringIO()):
        metrics = train(compose_cfg(["data=diabetes", "trainer.max_epochs=20"]))
    assert metrics["test/r2"] > 0.2
    # MSE in the target's own units (disease progression, variance ~6000), not the standardized ones.
    assert 1000 < metrics["test/mse"] < 6000


def _bad_tables(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    tables = {
        "one_class": base.assign(label="same"),
        "floats": base.assign(label=rng.normal(size=60)),
        "many": base.assign(label=np.arange(60) // 2),
        "gaps": base.assign(label=np.where(base.a > 0, "x", "y"), b=base.b.mask(base.index % 7 == 0)),
        "good": base.assign(label=np.where(base.a > 0, "x", "y")),
    }
    paths = {}
    for name, frame in tables.items():
        paths[name] = root / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    (root / "empty.csv").write_text("")
    (root / "header.csv").write_text("a,b,label\n")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 8)
    return paths


@pytest.mark.parametrize(("table", "extra", "expected"), [
    ("good", "data.options.features=[a,label]", "data.options.features lists the target column 'label'"),
    ("one_class", "", "The target 'label' has one class only ('same')"),
    ("floats", "data.task=multiclass", "needs class labels, but the target 'label' has fractional values"),
    ("many", "data.task=multiclass", "The target 'label' has 30 classes in 60 rows"),
    ("empty", "", "the file is empty."),
    ("header", "", "'header.csv' has a header (3 columns) but no rows."),
    ("binary", "", "Could not read 'binary.csv' as CSV: it is not utf-8 text"),
    ("gaps", "data.impute=false", "has empty cells in b (9), and data.impute=false"),
    ("good", "+data.options.sepp=x", "data.options.sepp is not an option of data=csv"),
])
def test_a_table_that_cannot_be_used_is_one_sentence_and_no_run(tmp_path: Path, table: str, extra: str,
                                                                expected: str) -> None:
    _bad_tables(tmp_path)
    outputs = tmp_path / "outputs"
    result = run_cli(["train", f"paths.output_dir={outputs}", *FAST, "data=csv",
                      f"data.options.path={tmp_path / (table + '.csv')}", "data.options.target=label",
                      *extra.split()], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if (outputs / "mlflow.db").exists():
        client = MlflowClient(store_uri(outputs))
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not (outputs / "runs").exists()
