"""Checkpoint writes throttled in time: what a small model's epoch can afford.

Writing `last.ckpt` and the best checkpoint after every epoch costs ~10 ms each (pickling plus a
file), which is most of an epoch of the seed's 1,000-sample model. `ThrottledCheckpointIO` keeps the
newest state of each checkpoint file in memory (a copy taken at the moment Lightning saves it, so it
is exactly that epoch's state) and writes files at most once every `every_s` seconds, and always when
fitting ends — normally, by SIGTERM / Ctrl-C, or by an error — because Lightning tears the strategy
(and with it this plugin) down on every one of those paths. Only a hard kill (SIGKILL, power loss) can
lose the epochs of the last `every_s` seconds; epochs longer than that are written as they finish.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO


def _detached_copy(value: Any) -> Any:
    """Tensors cloned, containers rebuilt, everything else shared: weights and optimizer moments are
    updated in place by the next steps, and this must stay the saved epoch's state. (Lightning's
    `apply_to_collection` does the same but took ~5 ms on a small model's checkpoint, an epoch's worth;
    leaves such as the ~300 counters of Lightning's loop state are passed over without a call each.)"""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):  # state dicts are OrderedDicts carrying `_metadata` (module versions)
        copied = (OrderedDict if isinstance(value, OrderedDict) else dict)(
            (key, item if type(item) in _ATOMS else _detached_copy(item)) for key, item in value.items()
        )
        if hasattr(value, "_metadata"):
            copied._metadata = value._metadata  # type: ignore[attr-defined]
        return copied
    if kind is tuple or kind is list:
        if set(map(type, value)) <= _ATOMS:  # e.g. Python's RNG state: 625 ints, nothing to clone
            return value if kind is tuple else list(value)
        return kind(_detached_copy(item) for item in value)
    return value


# Immutable leaves: shared between the live state and its copy.
_ATOMS = frozenset({int, float, bool, str, bytes, type(None)})


class ThrottledCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, deferring and coalescing the writes of one fit; after it, saves
    go straight to disk. (Not for XLA, whose strategy has an IO of its own: train() leaves it out there.)"""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = float(every_s)
        self._pending: dict[str, tuple[dict[str, Any], Any]] = {}
        self._last_write = time.monotonic()
        # Deferring ends with the first teardown (the end of fitting): saves after it, such as the
        # weights a `ddp_spawn` worker hands back to the main process, must be on disk at once.
        self._deferring = True

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if self.every_s <= 0 or not self._deferring:
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        self._pending[str(path)] = (_detached_copy(checkpoint), storage_options)
        if time.monotonic() - self._last_write >= self.every_s:
            self.flush()

    def remove_checkpoint(self, path: Any) -> None:
        # A superseded best checkpoint may never have reached the disk.
        self._pending.pop(str(path), None)
        if Path(path).exists():
            super().remove_checkpoint(path)

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.flush()
        return super().load_checkpoint(path, *args, **kwargs)

    def flush(self) -> None:
        """Write every pending checkpoint now."""
        pending, self._pending = self._pending, {}
        for path, (checkpoint, storage_options) in pending.items():
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        self._last_write = time.monotonic()

    def teardown(self) -> None:
        self.flush()
        self._deferring = False
