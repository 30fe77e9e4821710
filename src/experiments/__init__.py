"""experiments: MLP experiments on PyTorch Lightning, configured by Hydra, tracked in MLflow."""

__version__ = "0.1.0"
