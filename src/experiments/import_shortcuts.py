"""Importing torchmetrics without the `scipy.signal` it loads for nothing (~0.7–1.2 s of every start-up).

torchmetrics 1.9 runs `import scipy.signal` at package import, in three `__init__` files, only to add
`scipy.signal.hamming` for SRMRpy, a package torchmetrics itself never imports (upstream issue
Lightning-AI/torchmetrics#3457, fix pending in #3459). scikit-learn brings scipy along, so every
`experiments train` paid for it. While torchmetrics is imported, `scipy.signal` is a stand-in that
already has `hamming`; anything else asked of it imports the real module. Afterwards the stand-in is
gone and `import scipy.signal` works as ever. Once torchmetrics drops the shim this costs nothing.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _ScipySignalStandIn(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("scipy.signal")

    def hamming(self, *args: Any, **kwargs: Any) -> Any:
        return self._real().windows.hamming(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # `inspect.getmodule` (run while torch loads) probes every module's `__file__`: a stand-in has
        # none, so it is skipped rather than loaded. `__path__` (a submodule import) and any real
        # attribute need the real module.
        if name.startswith("__") and name != "__path__":
            raise AttributeError(name)
        return getattr(self._real(), name)

    def _real(self) -> types.ModuleType:
        if sys.modules.get("scipy.signal") is self:
            del sys.modules["scipy.signal"]
        return importlib.import_module("scipy.signal")


def import_torchmetrics() -> None:
    """`import torchmetrics` (Lightning imports it too), skipping its eager `scipy.signal` import."""
    if "torchmetrics" in sys.modules or "scipy.signal" in sys.modules:
        return
    stand_in = _ScipySignalStandIn()
    sys.modules["scipy.signal"] = stand_in
    try:
        import torchmetrics  # noqa: F401
    finally:
        if sys.modules.get("scipy.signal") is stand_in:
            del sys.modules["scipy.signal"]
