"""The learning-curve callback records every epoch's train/val values and draws them at the end."""

from __future__ import annotations

import lightning.pytorch as pl
import matplotlib.image

from experiments.callbacks.learning_curve import LearningCurvePlot
from experiments.data.datamodule import TabularDataModule
from experiments.models.mlp import build_mlp
from experiments.models.module import ExperimentModule


def test_without_mlflow_the_png_lands_in_the_run_dir_with_every_epoch(tmp_path) -> None:
    pl.seed_everything(0, verbose=False)
    data = TabularDataModule("make_moons", {"n_samples": 120}, split={"train": 0.5, "val": 0.5, "test": 0.0})
    module = ExperimentModule(build_mlp(2, 1, hidden_dims=[8]), task="binary", num_classes=2,
                              optimizer={"_target_": "torch.optim.Adam", "lr": 1e-2})
    plot = LearningCurvePlot(filename="curve.png")
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                         callbacks=[plot])
    trainer.fit(module, datamodule=data)

    assert {k: sorted(v) for k, v in plot.history.items()} == {
        k: [0, 1, 2] for k in ("train/loss", "val/loss", "train/acc", "val/acc")}
    assert plot.history["val/loss"][2] == float(trainer.callback_metrics["val/loss"])
    image = matplotlib.image.imread(tmp_path / "curve.png")
    assert image.shape[0] > 200 and image.shape[1] > 600  # two panels side by side

    resumed = LearningCurvePlot()
    resumed.load_state_dict(plot.state_dict())  # a resumed run keeps the epochs before the interruption
    assert resumed.history == plot.history


def test_a_plot_drawn_after_others_is_the_png_a_new_figure_draws(tmp_path) -> None:
    """Plots reuse one figure per metric (a population draws one per member): no line, colour, scale or
    legend of an earlier member's plot may show in a later one."""
    import random

    from experiments import learning_curve_plot

    def history(epochs: int, seed: int, keys: tuple[str, ...]) -> dict[str, dict[int, float]]:
        draw = random.Random(seed)
        return {key: {e: draw.random() * (seed + 1) for e in range(epochs)} for key in keys}

    every = ("train/loss", "val/loss", "train/auroc", "val/auroc")
    cases = [history(10, 1, every), history(40, 2, every), history(1, 3, every),
             history(6, 4, ("train/loss", "val/loss", "val/auroc")), history(10, 5, every)]
    alone = []
    for i, case in enumerate(cases):
        learning_curve_plot._FIGURES.clear()
        alone.append(learning_curve_plot.plot_learning_curve(case, "auroc", tmp_path / f"alone{i}.png").read_bytes())
    learning_curve_plot._FIGURES.clear()
    in_a_row = [learning_curve_plot.plot_learning_curve(case, "auroc", tmp_path / f"row{i}.png").read_bytes()
                for i, case in enumerate(cases)]
    assert len(set(alone)) == len(cases)  # the cases draw different pictures
    assert in_a_row == alone
