"""The train side of Optuna sweeps without training: the preset, the direction check, when pruning is on."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, open_dict

from experiments.optuna_trial import direction_conflict, pruning_callbacks

Compose = Callable[..., DictConfig]
LINK = {"storage": "sqlite:////tmp/never-opened.db", "study_name": "s", "trial_number": 3}


def test_the_preset_optimizes_the_monitor_in_its_mode(compose_cfg: Compose) -> None:
    cfg = compose_cfg(["sweep=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.startswith("hydra_plugins.experiments_optuna_sweeper")
    assert (sweeper.direction, cfg.optimized_metric, sweeper.pruner) == ("minimize", "val/loss_best", "median")
    assert sweeper.storage == f"sqlite:///{cfg.paths.output_dir}/optuna.db"
    assert sweeper.study_name == "mlp_seed_random"
    assert set(sweeper.params) == {"optimizer.lr", "model.hidden_dims", "model.dropout"}
    assert direction_conflict(cfg) is None

    accuracy = compose_cfg(["sweep=optuna", "monitor=val/acc", "monitor_mode=max", "data=wine"])
    assert accuracy.hydra.sweeper.direction == "maximize" and accuracy.hydra.sweeper.study_name == "mlp_wine"
    assert direction_conflict(accuracy) is None


def test_a_direction_against_monitor_mode_is_one_clear_sentence(compose_cfg: Compose) -> None:
    cfg = compose_cfg(["sweep=optuna", "hydra.sweeper.direction=maximize"])
    assert direction_conflict(cfg) == (
        "hydra.sweeper.direction=maximize contradicts monitor_mode=min (monitor=val/loss); "
        "set hydra.sweeper.direction=minimize, or monitor_mode to match."
    )
    # Another objective without pruning may go its own way; pruning always compares the monitor.
    free = compose_cfg(["sweep=optuna", "hydra.sweeper.direction=maximize", "optimized_metric=test/acc",
                        "hydra.sweeper.pruner=none"])
    assert direction_conflict(free) is None
    null = compose_cfg(["sweep=optuna", "hydra.sweeper.direction=maximize", "optimized_metric=test/acc",
                        "hydra.sweeper.pruner=null"])  # null reads as none: no pruning
    assert direction_conflict(null) is None
    multi = compose_cfg(["sweep=optuna", "hydra.sweeper.direction=[minimize,minimize]",
                         "optimized_metric=[val/loss_best,model/n_params]"])
    assert "needs one objective" in (direction_conflict(multi) or "")
    assert direction_conflict(compose_cfg(["monitor_mode=max"])) is None  # the basic sweeper has no direction


def test_pruning_is_wired_only_into_a_live_single_objective_trial(compose_cfg: Compose) -> None:
    cfg = compose_cfg()
    assert pruning_callbacks(cfg) == []  # not launched by the Optuna sweeper
    with open_dict(cfg):
        cfg.optuna = LINK
    [callback] = pruning_callbacks(cfg)
    assert callback.monitor == "val/loss" and callback.link.trial_number == 3
    with open_dict(cfg):
        cfg.optimized_metric = ["val/loss_best", "model/n_params"]
    assert pruning_callbacks(cfg) == []  # Optuna cannot prune multi-objective studies
    with open_dict(cfg):
        cfg.optimized_metric = "val/loss_best"
        cfg.resume = "0123abcd"
    assert pruning_callbacks(cfg) == []  # a resumed trial run trains after its trial ended
