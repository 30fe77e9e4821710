"""Every config file under conf/ composes, and the defaults are the seed experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.paths import config_dir
from tests.conftest import compose_train_config

GROUPS_SELECTABLE = ["data", "model", "optimizer", "scheduler", "regularization", "trainer", "callbacks", "logger",
                     "debug", "experiment", "sweep"]


def _options() -> list[tuple[str, str]]:
    found = []
    for group in GROUPS_SELECTABLE:
        for file in sorted((config_dir() / group).rglob("*.yaml")):
            found.append((group, str(file.relative_to(config_dir() / group).with_suffix(""))))
    return found


def test_defaults_are_the_seed_experiment(outputs: Path) -> None:
    cfg = compose_train_config(outputs)
    assert list(cfg.model.hidden_dims) == [10, 8] and cfg.model.activation == "relu"
    assert cfg.data.dataset == "seed_random" and cfg.data.options.n_samples == 1000 and cfg.data.options.n_features == 8
    assert cfg.data.batch_size == 32 and cfg.trainer.max_epochs == 10 and cfg.optimizer._target_ == "torch.optim.Adam"


@pytest.mark.parametrize(("group", "option"), _options())
def test_every_config_option_composes(outputs: Path, group: str, option: str) -> None:
    override = f"{group}={option}"
    cfg = compose_train_config(outputs, [override])
    from omegaconf import OmegaConf

    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
