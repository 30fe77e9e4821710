"""Sizes chosen for the model: intra-op threads, rows per evaluation batch, members a population holds."""

from __future__ import annotations

import os
from collections.abc import Iterable

# Below this many multiply-adds per batch, a second intra-op thread costs more in hand-off than it
# gains, and collapses when another process is busy (figures in docs/performance.md).
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


# Evaluation keeps no gradients, so few large batches cost least, until one batch's activations outgrow
# the CPU's caches (figures in docs/performance.md). `auto` sizes a batch to 8 MiB of float32
# activations at the widest layer.
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


# Share of the free memory a population may plan to take: the rest is for the process itself, the data
# loaders and what the estimate below leaves out.
POPULATION_MEMORY_SHARE = 0.5


def member_memory_bytes(n_params: int, input_dim: int, hidden_dims: list[int], batch_size: int,
                        split_sizes: dict[str, int]) -> int:
    """What one member of a population needs, in float32 bytes: its stacked weights and its own
    network's, gradients, two optimizer states, the optimizer groups' weights joined for a step, the best
    weights' copy and an averaging copy of both weights (9 × the parameters); a training step's
    activations, kept for backward with their masks (4 per unit and sample); one evaluation batch's
    activations; and the outputs of the evaluated splits, kept for the epoch's metrics."""
    widest = widest_layer(input_dim, hidden_dims)
    units = input_dim + sum(hidden_dims) + 1
    eval_rows = choose_eval_batch_size("auto", widest)
    evaluated = split_sizes.get("val", 0) + split_sizes.get("train", 0) + split_sizes.get("test", 0)
    floats = 9 * n_params + 4 * batch_size * units + 2 * eval_rows * widest + 2 * evaluated
    return 4 * floats


def available_memory_bytes(device: str) -> int:
    """The share of free memory a population may take: of the GPU's on CUDA, else of the host's."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return int(POPULATION_MEMORY_SHARE * free)
    free = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(POPULATION_MEMORY_SHARE * free)
