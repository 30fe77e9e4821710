"""What the console shows around a run: Lightning's advice that does not apply here is kept quiet, and
what it says of the devices is said once a process."""

from __future__ import annotations

import logging
import warnings
from typing import Any


def quiet_lightning_warnings() -> None:
    """Lightning's advice about DataLoader workers and log intervals does not apply to in-memory
    whole-batch loading with per-epoch logging; it would only bury the warnings that matter."""
    for pattern in (
        r".*does not have many workers.*",
        r".*The number of training batches .* is smaller than the logging interval.*",
        r".*Checkpoint directory .* exists and is not empty.*",
        r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    for name in _RANK_ZERO_LOGGERS:  # Lightning's rank-zero messages go through one of these
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietLines) for f in logger.filters):
            logger.addFilter(_QuietLines())


def table_console() -> Any:
    """A Rich console for tables: the terminal's width, or 200 columns when piped into a file or a CI log,
    where Rich would assume 80 and cut the headers and squeeze the numbers."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


# What every Trainer says of the devices: worth reading once, not once per run of a sweep or population.
_DEVICE_LINES = ("GPU available:", "TPU available:")
_devices_said: set[str] = set()


class _QuietLines(logging.Filter):
    """Drops Lightning's "💡 Tip: …" lines (a cloud-logging advertisement printed whenever a Trainer
    starts without its own logger), and its device lines after the first time a process prints them:
    our console shows only what the framework means to say."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        if message.startswith("💡 Tip"):
            return False
        if message.startswith(_DEVICE_LINES):
            if message in _devices_said:
                return False
            _devices_said.add(message)
        return True
