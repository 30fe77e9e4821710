"""Evaluation batch size: `auto` follows the model's width; an explicit size is kept; bad values are refused."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest

from experiments.errors import UserError
from experiments.train import train
from experiments.validation import validate_config

QUICK = ["logger=none", "callbacks.learning_curve=null", "data.options.n_samples=400", "trainer.max_epochs=1",
         "test=false"]


def _validation_batch_rows(monkeypatch: pytest.MonkeyPatch, compose_cfg, overrides: list[str]) -> int:
    """Train once; return the rows per batch of the validation loader the trainer was given."""
    from experiments.data.datamodule import TabularDataModule

    seen: list[int] = []
    original = TabularDataModule.val_dataloader

    def record(self):  # type: ignore[no-untyped-def]
        loaders = original(self)
        seen.append(self.eval_batch_size)
        return loaders

    monkeypatch.setattr(TabularDataModule, "val_dataloader", record)
    with redirect_stdout(io.StringIO()):
        train(compose_cfg([*QUICK, *overrides]))
    monkeypatch.setattr(TabularDataModule, "val_dataloader", original)
    return seen[0]


def test_auto_evaluation_batches_shrink_for_wide_layers(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    # ~8 MB of activations per batch: 2048 rows of a 1024-wide layer, 8192 (the cap) for the seed's 10-wide one.
    assert _validation_batch_rows(monkeypatch, compose_cfg, ["model.hidden_dims=[1024,16]"]) == 2048
    assert _validation_batch_rows(monkeypatch, compose_cfg, ["model.hidden_dims=[512]"]) == 4096
    assert _validation_batch_rows(monkeypatch, compose_cfg, []) == 8192


def test_an_explicit_evaluation_batch_size_is_kept(monkeypatch: pytest.MonkeyPatch, compose_cfg) -> None:
    rows = _validation_batch_rows(monkeypatch, compose_cfg, ["model.hidden_dims=[1024]", "data.eval_batch_size=300"])
    assert rows == 300


@pytest.mark.parametrize("value", ["0", "-5", "big", "2.5"])
def test_a_bad_evaluation_batch_size_is_refused_in_one_sentence(compose_cfg, value: str) -> None:
    with pytest.raises(UserError, match=r"data.eval_batch_size must be a positive whole number of rows or 'auto'"):
        validate_config(compose_cfg([f"data.eval_batch_size={value}"]))
