"""User-facing errors: one clear sentence, no traceback."""

from __future__ import annotations

import math
from typing import Any


class ReportedError(Exception):
    """An error the command line prints as one sentence (`error: …`) and exits with, without a traceback."""

    exit_code = 1


class UserError(ReportedError):
    """A mistake in the user's input (config, CLI arguments, files). Printed as one line, exit code 2."""

    exit_code = 2


class TrainingFailed(Exception):
    """Training stopped for a reason the user can act on (e.g. a NaN loss); printed as one line."""


def instantiated(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, passing on a `UserError` the target raised as itself: Hydra wraps it in
    an InstantiationException that prints as several lines naming the target's full class path."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def non_finite_message(value: float, epoch: int, batch: int) -> str:
    """Why a run stopped at a non-finite loss, and what to try."""
    shown = str(value) if not math.isfinite(value) else "non-finite"
    return (f"Training loss became {shown} at epoch {epoch}, batch {batch} (the first batch whose loss was "
            "not finite): lower optimizer.lr, clip gradients (trainer.gradient_clip_val=1.0) or try another "
            "optimizer.")
