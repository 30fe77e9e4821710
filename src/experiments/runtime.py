"""Process-level settings a run applies before training: threads, batch sizes, GC, warning noise."""

from __future__ import annotations

import gc
import logging
import os
import warnings
from collections.abc import Iterable

# Below this many multiply-adds per batch, a second intra-op thread costs more in hand-off than it
# gains, and collapses when another process is busy (measured: 10x slower on 2 threads).
_SMALL_BATCH_FLOPS = 2_000_000


def choose_threads(requested: int | str, params_per_sample: int, batch_size: int) -> int:
    """`auto`: one thread for small models, all cores otherwise; an integer is taken as given."""
    if requested != "auto":
        return max(1, int(requested))
    if params_per_sample * batch_size < _SMALL_BATCH_FLOPS:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def apply_threads(count: int) -> None:
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


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
        if not any(isinstance(f, _NoAdvertisements) for f in logger.filters):
            logger.addFilter(_NoAdvertisements())


_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _NoAdvertisements(logging.Filter):
    """Drops Lightning's "💡 Tip: …" lines (a cloud-logging advertisement printed whenever a Trainer
    starts without its own logger): our console shows only what the framework means to say."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip")


# Evaluation keeps no gradients, so few large batches cost least, until one batch's activations outgrow
# the CPU's caches: a 30,000-row pass of the 1024-wide `large` net took 0.60 s in batches of 2048 rows and
# 0.74 s in batches of 8192 on the 2-core maintainers' machine (in one batch, the way a hand-written loop
# often does it: ~0.77 s). `auto` sizes a batch to ~8 MB of float32 activations at the widest layer.
_EVAL_BATCH_BYTES = 8 * 2**20
_EVAL_BATCH_MAX_ROWS = 8192
_EVAL_BATCH_MIN_ROWS = 256


def widest_layer(input_dim: int, hidden_dims: Iterable[int]) -> int:
    return max([int(input_dim), *(int(width) for width in hidden_dims)])


def choose_eval_batch_size(requested: int | str, widest: int) -> int:
    """Rows per validation/test batch (`auto`: a power of two, 2048 at 1024 units, 8192 at 256 or fewer)."""
    if requested != "auto":
        return int(requested)
    rows = _EVAL_BATCH_BYTES // (4 * max(widest, 1))
    return max(_EVAL_BATCH_MIN_ROWS, min(_EVAL_BATCH_MAX_ROWS, 1 << (rows.bit_length() - 1)))


# Start-up (importing torch, Lightning and MLflow, creating the MLflow store) builds ~500k long-lived
# objects; the cyclic garbage collector rescans all of them each time their number grows by a quarter,
# which measured ~2 s of a ~13 s `experiments train` start on this project's 2-core machine.
_gc_paused_for_startup = False


def pause_gc_for_startup() -> None:
    """Called first thing by `experiments train`: no cycle collection while the process loads."""
    global _gc_paused_for_startup
    if gc.isenabled():
        gc.disable()
        _gc_paused_for_startup = True


def resume_gc_after_startup() -> None:
    """Called when training starts: what start-up built is frozen (never rescanned; it lives as long as
    the process anyway) and collection resumes for what training allocates. Later calls do nothing."""
    global _gc_paused_for_startup
    if _gc_paused_for_startup:
        gc.freeze()
        gc.enable()
        _gc_paused_for_startup = False
