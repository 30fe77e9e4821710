"""The names a config may choose from. Torch-free, so bad input is refused before torch loads;
the builders (models/mlp.py, models/optim.py, data/sources.py) key their tables on these same names."""

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu", "elu", "selu", "silu", "identity")
NORMS = ("none", "batch", "layer")
INITS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "normal")
LOG_CHECKPOINTS = ("none", "best", "last", "all")  # which checkpoint files a run logs to MLflow
TASKS = ("auto", "binary", "multiclass", "regression")
DATASETS = (
    "seed_random",
    "breast_cancer",
    "digits",
    "wine",
    "iris",
    "diabetes",
    "make_classification",
    "make_moons",
    "csv",
)
# Keyword arguments of models.mlp.build_mlp a `model` config may set (`input_dim` is taken out first).
BUILD_MLP = "experiments.models.mlp.build_mlp"  # the `model._target_` of every preset
MODEL_KEYS = ("_target_", "_partial_", "input_dim", "hidden_dims", "activation", "dropout", "norm", "init", "init_std", "bias_init")
# The scores models/epoch_metrics.py computes per task; published as train/<score> and val/<score>.
TASK_SCORES = {
    "binary": ("acc", "auroc", "f1"),
    "multiclass": ("acc", "auroc", "f1"),
    "regression": ("mse", "mae", "r2"),
}


# The score a generalization gap is reported for besides the loss (higher is better).
MAIN_SCORE = {"binary": "acc", "multiclass": "acc", "regression": "r2"}


def monitorable_metrics(task: str) -> tuple[str, ...]:
    """What `monitor` may name for a task: the per-epoch values the training module publishes."""
    scores = ("loss", *TASK_SCORES[task])
    return (*(f"{split}/{score}" for split in ("val", "train") for score in scores),
            "gap/loss", f"gap/{MAIN_SCORE[task]}", "train/objective")
