"""`mlflow.pytorch` without the second Lightning it would load.

On import, `mlflow.pytorch` tries `import pytorch_lightning` (the standalone package that `lightning`
depends on but never imports) to offer its autologging checkpoint callback, and swallows the
ImportError when that package is missing. We train with `lightning.pytorch` and never use that
callback, yet the import costs ~0.2 s at the end of every run (longer than half the seed network's
training). Marking `pytorch_lightning` as not importable (`sys.modules[name] = None`, Python's own
way to make an import fail) for the duration of that one import gives MLflow the path it already
handles; saving, logging and loading PyTorch models do not use the package.
"""

from __future__ import annotations

import sys
from types import ModuleType

_STANDALONE_LIGHTNING = "pytorch_lightning"


def import_mlflow_pytorch() -> ModuleType:
    """`import mlflow.pytorch`, skipping its optional import of the standalone `pytorch_lightning`."""
    if "mlflow.pytorch" in sys.modules or _STANDALONE_LIGHTNING in sys.modules:
        import mlflow.pytorch  # already loaded, or someone in this process uses pytorch_lightning itself

        return mlflow.pytorch
    sys.modules[_STANDALONE_LIGHTNING] = None  # type: ignore[assignment]
    try:
        import mlflow.pytorch
    finally:
        del sys.modules[_STANDALONE_LIGHTNING]  # later imports of the package work as usual
    return mlflow.pytorch
