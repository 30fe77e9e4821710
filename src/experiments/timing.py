"""Phase timestamps of one process, written only when a benchmark asks for them (env var)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASE_FILE_ENV = "EXPERIMENTS_PHASE_FILE"


def mark(phase: str) -> None:
    """Append `{"phase": wall-clock time}` to the file named by $EXPERIMENTS_PHASE_FILE, if set."""
    path = os.environ.get(PHASE_FILE_ENV)
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({phase: time.time()}) + "\n")


@contextmanager
def marked(phase: str) -> Iterator[None]:
    """`{phase}_start` and `{phase}_end` around the block (the end only if it completes)."""
    mark(f"{phase}_start")
    yield
    mark(f"{phase}_end")
