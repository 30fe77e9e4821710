"""Data sources, column roles, targets, splits and the preprocessing pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.data.datamodule import TabularDataModule
from experiments.data.sources import load_source
from experiments.data.split import split_rows
from experiments.errors import UserError
from tests.tables import messy_table


def _module(dataset: str, options: dict | None = None, **kwargs) -> TabularDataModule:
    return TabularDataModule(dataset, options or {}, **kwargs)


def test_seed_random_matches_the_tutorial_shape_and_is_seeded() -> None:
    a = load_source("seed_random", {"n_samples": 1000, "n_features": 8, "seed": 3}).frame
    b = load_source("seed_random", {"n_samples": 1000, "n_features": 8, "seed": 3}).frame
    assert a.shape == (1000, 9) and list(a.columns[:2]) == ["x0", "x1"]
    assert set(a.target.unique()) == {0, 1}
    features = a.drop(columns="target").to_numpy()
    assert np.all((features >= 0) & (features < 1))
    assert a.equals(b)


@pytest.mark.parametrize(
    ("name", "task", "classes"),
    [("breast_cancer", "binary", 2), ("iris", "multiclass", 3), ("wine", "multiclass", 3), ("digits", "multiclass", 10),
     ("diabetes", "regression", 0)],
)
def test_bundled_datasets_infer_their_task(name: str, task: str, classes: int) -> None:
    data = _module(name)
    assert data.task == task and data.num_classes == classes


def test_split_sizes_and_stratification() -> None:
    data = _module("make_classification", {"n_samples": 400, "flip_y": 0.0, "seed": 1},
                   split={"train": 0.5, "val": 0.25, "test": 0.25})
    split = data.arrays
    assert split.sizes == {"train": 200, "val": 100, "test": 100}
    overall = np.concatenate([split.y_train, split.y_val, split.y_test]).mean()
    for y in (split.y_train, split.y_val, split.y_test):
        assert abs(y.mean() - overall) < 0.02  # stratified: class balance kept in each split
    again = _module("make_classification", {"n_samples": 400, "flip_y": 0.0, "seed": 1},
                    split={"train": 0.5, "val": 0.25, "test": 0.25})
    assert np.array_equal(split.x_val, again.arrays.x_val)  # deterministic


def test_fractions_below_one_leave_the_rest_out() -> None:
    targets = np.arange(569) % 2
    rows = split_rows(targets, True, 0.1, 0.2, 0.2, seed=0)
    assert sum(len(r) for r in rows) == pytest.approx(0.5 * len(targets), abs=2)


def test_standardization_uses_training_statistics_only() -> None:
    split = _module("diabetes", split={"train": 0.6, "val": 0.2, "test": 0.2}).arrays
    assert np.allclose(split.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(split.x_train.std(axis=0), 1, atol=1e-3)
    assert not np.allclose(split.x_val.mean(axis=0), 0, atol=1e-3)  # val statistics were not used
    # The regression target too: standardized on the training rows, in the user's units for metrics.
    assert abs(split.y_train.mean()) < 1e-5 and abs(split.y_train.std() - 1) < 1e-3


def test_csv_source_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("a,b,label\n1,2,yes\n3,4,no\n5,6,yes\n7,8,no\n6,1,yes\n2,2,no\n4,4,yes\n5,5,no\n9,1,yes\n1,9,no\n")
    data = _module("csv", {"path": str(good), "target": "label"})
    assert data.input_dim == 2 and data.task == "binary"
    assert data.preparation.columns == ["a", "b"]
    subset = _module("csv", {"path": str(good), "target": "label", "features": ["b"]})
    assert subset.input_dim == 1

    with pytest.raises(UserError, match="does not exist"):
        _module("csv", {"path": str(tmp_path / "missing.csv"), "target": "label"})
    with pytest.raises(UserError, match="has no target column 'y'; its columns are: a, b, label"):
        _module("csv", {"path": str(good), "target": "y"})


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UserError, match="choose one of: seed_random, breast_cancer"):
        load_source("mnist", {})


def test_datamodule_serves_whole_batches_in_a_seeded_order() -> None:
    dm = TabularDataModule("seed_random", {"n_samples": 100, "n_features": 3}, split={"train": 0.5, "val": 0.25,
                           "test": 0.25}, batch_size=16, shuffle_seed=7)
    batches = list(dm.train_dataloader())
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    again = [b[1] for b in TabularDataModule("seed_random", {"n_samples": 100, "n_features": 3},
                                             split={"train": 0.5, "val": 0.25, "test": 0.25}, batch_size=16,
                                             shuffle_seed=7).train_dataloader()]
    assert all(np.array_equal(a[1], b) for a, b in zip(batches, again))
    assert dm.input_dim == 3 and dm.num_outputs == 1
    _val, train_eval = dm.val_dataloader()
    assert sum(len(b[0]) for b in train_eval) == 50  # the whole training split, for eval-mode train metrics


@pytest.mark.parametrize("name", ["breast_cancer", "iris", "wine", "digits", "diabetes"])
def test_default_fractions_use_every_row_of_each_bundled_dataset(name: str) -> None:
    data = _module(name)
    n = len(data.frame)
    assert sum(data.arrays.sizes.values()) == n
    assert data.arrays.sizes["train"] == round(0.7 * n)


def test_every_column_gets_a_role_and_the_pipeline_is_fitted_on_training_rows(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    table = messy_table()
    table.loc[5, "label"] = None
    table.to_csv(path, index=False)
    dm = _module("csv", {"path": str(path), "target": "label"}, min_frequency=5)
    roles = {c.name: (c.role, c.note) for c in dm.preparation.plan.roles}
    assert roles["Unnamed: 0"] == ("dropped", "a saved pandas index")
    assert roles["customer_id"][0] == "dropped" and "ID-like" in roles["customer_id"][1]
    assert roles["country"] == ("dropped", "constant")
    assert {name: roles[name][0] for name in ("age", "colour", "member", "signup", "income")} == {
        "age": "numeric", "colour": "categorical", "member": "categorical", "signup": "datetime",
        "income": "numeric"}
    assert roles["label"][0] == "target" and "positive class 'buyer'" in roles["label"][1]
    assert "1 row with an empty target 'label' left out" in dm.report() and len(dm.frame) == 299
    names = dm.preparation.output_names
    # Rare 'violet' is grouped, gaps are a category of their own, dates become numeric parts.
    assert "colour_missing" in names and "colour_infrequent_sklearn" in names and "signup_year" in names
    assert not np.isnan(dm.arrays.x_train).any()
    numeric = [names.index("age"), names.index("income")]
    assert np.allclose(dm.arrays.x_train[:, numeric].mean(axis=0), 0, atol=1e-5)  # fitted on train only


def test_column_overrides_and_their_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    messy_table().to_csv(path, index=False)
    base = {"path": str(path), "target": "label"}
    dm = _module("csv", {**base, "exclude": ["income"], "numeric": ["customer_id"], "categorical": ["age"]})
    roles = {c.name: c.role for c in dm.preparation.plan.roles}
    assert roles["income"] == "dropped" and roles["customer_id"] == "numeric" and roles["age"] == "categorical"
    only = _module("csv", {**base, "features": ["age", "signup"]})
    assert only.preparation.columns == ["age", "signup"]
    cases = {
        "features": (["age", "label"], "data.options.features lists the target column 'label'"),
        "exclude": (["nope"], "data.options.exclude names columns the table does not have: nope"),
        "numeric": (["colour"], "data.options.numeric lists 'colour', whose values are not numbers"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(UserError, match=message):
            _module("csv", {**base, key: value})
    with pytest.raises(UserError, match="data.options.sepp is not an option of data=csv; the options are: path, sep"):
        _module("csv", {**base, "sepp": ";"})
    with pytest.raises(UserError, match="empty cells in age \\(34\\), colour \\(28\\), and data.impute=false"):
        _module("csv", base, impute=False)


def test_targets_keep_their_labels_and_refuse_what_cannot_be_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})

    def module_for(target: object, **kwargs) -> TabularDataModule:
        path = tmp_path / "t.csv"
        table.assign(y=target).to_csv(path, index=False)
        return _module("csv", {"path": str(path), "target": "y"}, **kwargs)

    binary = module_for(np.where(table.a > 0, "yes", "no"), positive_class="no")
    assert binary.target.classes == ("yes", "no") and binary.target.positive == "no"
    weighted = module_for(np.where(table.a > 1.2, 1, 0), class_weight="balanced")
    counts = np.bincount(weighted.arrays.y_train)
    assert weighted.target.class_weights == pytest.approx(tuple(counts.sum() / (2 * counts)))
    refusals = {
        "one class only": (lambda: module_for("same")),
        "needs class labels, but the target 'y' has fractional values": (
            lambda: module_for(table.a.to_numpy(), task="multiclass")),
        "has 100 classes in 200 rows": (lambda: module_for(np.arange(200) // 2, task="multiclass")),
        "data.positive_class='maybe' is not a label of 'y'": (
            lambda: module_for(np.where(table.a > 0, "yes", "no"), positive_class="maybe")),
        "needs a numeric target": (lambda: module_for(np.where(table.a > 0, "yes", "no"), task="regression")),
    }
    for message, build in refusals.items():
        with pytest.raises(UserError, match=message):
            build()
