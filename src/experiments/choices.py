"""The names a config may choose from. Torch-free, so bad input is refused before torch loads;
the builders (models/mlp.py, models/optim.py, data/sources.py) key their tables on these same names."""

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu", "elu", "selu", "silu", "identity")
NORMS = ("none", "batch", "layer")
INITS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "normal")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
FUSED_OPTIMIZERS = ("sgd", "adam", "adamw")  # those with a one-kernel update in PyTorch
SCHEDULERS = ("none", "step", "cosine", "plateau")
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
