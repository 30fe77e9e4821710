"""Sweeper errors. CompactHydraException makes Hydra print the one-sentence message without a traceback."""

from __future__ import annotations

from hydra.errors import CompactHydraException


class SweeperConfigError(CompactHydraException, ValueError):
    """The sweeper config or search space is invalid; the message says what to change."""


class SweepFailedError(CompactHydraException, RuntimeError):
    """The sweep stopped, e.g. because too many trials failed."""
