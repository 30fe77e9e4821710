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


# Lightning spends roughly a millisecond of Python per training item (hooks, fetcher, batch transfer,
# logger connector); an item of ~0.25 s of compute makes that well under 1 % (measured on `large`:
# one 65 ms step per item left 1.3 % of its epoch to that machinery), while the progress bar, which
# counts optimizer steps, still moves a few times a second. Step time is estimated as a fixed per-step
# cost plus 6 FLOPs per parameter per sample (forward + backward + update) at a CPU rate (measured on
# the 2-core maintainers' machine: ~110 GFLOP/s for 1024-wide layers, ~45 for 256-wide ones).
_ITEM_TARGET_S = 0.25
_STEP_FIXED_S = 0.0003
_FLOPS_PER_S = 100e9


def choose_steps_per_item(requested: int | str, n_params: int, batch_size: int, steps_per_epoch: int,
                          world_size: int, counts_batches: bool = False) -> int:
    """How many optimizer steps one Lightning training item carries (`auto`: enough for ~0.25 s).

    Always 1 under DDP: every step's forward must pass through the DDP wrapper that syncs gradients.
    Always 1 when a trainer setting counts training batches (`limit_train_batches`, a step-based
    `val_check_interval`): Lightning counts items, so an item must be one batch for those to mean batches.
    """
    if world_size > 1 or counts_batches:
        return 1
    if requested != "auto":
        return max(1, int(requested))
    step_s = _STEP_FIXED_S + 6 * n_params * batch_size / _FLOPS_PER_S
    return max(1, min(steps_per_epoch, round(_ITEM_TARGET_S / step_s)))


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
