"""Run names a user can read in the UI's runs table: each setting once, numbers to 3 significant digits."""

from experiments.run_names import run_name_for, trial_run_name


def test_a_trial_shows_each_swept_setting_once_and_short(compose_cfg) -> None:
    cfg = compose_cfg(["model.hidden_dims=[128,128]", "model.dropout=0.48460345445772285",
                       "optimizer.lr=0.0002994705431254776"])
    assert run_name_for(cfg) == "mlp-relu-128x128-dropout=0.485"
    name = trial_run_name(cfg, ["model.dropout", "model.hidden_dims", "optimizer.lr"])
    assert name == "mlp-relu-128x128-dropout=0.485 lr=0.000299"


def test_the_users_own_name_wins(compose_cfg) -> None:
    assert run_name_for(compose_cfg(["logger.run_name=mine"])) == "mine"
    assert run_name_for(compose_cfg(["regularization.l2=0.001", "model.norm=batch"])) == "mlp-relu-10x8-l2=0.001-batchnorm"
