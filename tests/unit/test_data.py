"""Data sources, splits, standardization and CSV errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments.data.datamodule import TabularDataModule
from experiments.data.sources import load_source
from experiments.data.split import split_data, standardize
from experiments.errors import UserError


def test_seed_random_matches_the_tutorial_shape_and_is_seeded() -> None:
    a = load_source("seed_random", {"n_samples": 1000, "n_features": 8, "seed": 3})
    b = load_source("seed_random", {"n_samples": 1000, "n_features": 8, "seed": 3})
    assert a.features.shape == (1000, 8) and a.task == "binary"
    assert set(np.unique(a.targets)) == {0, 1}
    assert np.all((a.features >= 0) & (a.features < 1))
    assert np.array_equal(a.features, b.features)


@pytest.mark.parametrize(
    ("name", "task", "classes"),
    [("breast_cancer", "binary", 2), ("iris", "multiclass", 3), ("wine", "multiclass", 3), ("digits", "multiclass", 10),
     ("diabetes", "regression", 0)],
)
def test_bundled_datasets_infer_their_task(name: str, task: str, classes: int) -> None:
    data = load_source(name, {})
    assert data.task == task and data.num_classes == classes


def test_split_sizes_and_stratification() -> None:
    data = load_source("make_classification", {"n_samples": 400, "flip_y": 0.0, "seed": 1})
    split = split_data(data, 0.5, 0.25, 0.25, seed=0)
    assert split.sizes == {"train": 200, "val": 100, "test": 100}
    overall = data.targets.mean()
    for y in (split.y_train, split.y_val, split.y_test):
        assert abs(y.mean() - overall) < 0.02  # stratified: class balance kept in each split
    again = split_data(data, 0.5, 0.25, 0.25, seed=0)
    assert np.array_equal(split.x_val, again.x_val)  # deterministic


def test_fractions_below_one_leave_the_rest_out() -> None:
    data = load_source("breast_cancer", {})
    split = split_data(data, 0.1, 0.2, 0.2, seed=0)
    assert sum(split.sizes.values()) == pytest.approx(0.5 * len(data.targets), abs=2)


def test_standardization_uses_training_statistics_only() -> None:
    data = load_source("diabetes", {})
    split = standardize(split_data(data, 0.6, 0.2, 0.2, seed=0))
    assert np.allclose(split.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(split.x_train.std(axis=0), 1, atol=1e-3)
    assert not np.allclose(split.x_val.mean(axis=0), 0, atol=1e-3)  # val statistics were not used


def test_csv_source_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("a,b,label\n1,2,yes\n3,4,no\n5,6,yes\n7,8,no\n")
    data = load_source("csv", {"path": str(good), "target": "label"})
    assert data.features.shape == (4, 2) and data.task == "binary"
    assert data.feature_names == ("a", "b")
    subset = load_source("csv", {"path": str(good), "target": "label", "features": ["b"]})
    assert subset.features.shape == (4, 1)

    with pytest.raises(UserError, match="does not exist"):
        load_source("csv", {"path": str(tmp_path / "missing.csv"), "target": "label"})
    with pytest.raises(UserError, match="no target column 'y'; its columns are: a, b, label"):
        load_source("csv", {"path": str(good), "target": "y"})
    text = tmp_path / "text.csv"
    text.write_text("a,colour,label\n1,red,0\n2,blue,1\n")
    with pytest.raises(UserError, match="non-numeric feature columns: colour"):
        load_source("csv", {"path": str(text), "target": "label"})


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
    data = load_source(name, {})
    split = split_data(data, 0.7, 0.15, 0.15, seed=0)
    assert sum(split.sizes.values()) == len(data.targets)
    assert split.sizes["train"] == round(0.7 * len(data.targets))
