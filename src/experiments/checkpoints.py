"""Checkpoints that can continue a run exactly, read safely, and optionally go to MLflow.

Lightning's checkpoint already holds weights, optimizer, schedulers, loop progress and callback
state. `RunStateCheckpoint` adds what it leaves out: the RNG streams (dropout and input noise draw
from them; the data order does not, see `ShuffledBatches`) and the run the checkpoint belongs to
(MLflow run id, store and resolved config), so `ckpt_path=…` alone knows what to continue.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from experiments.errors import UserError

RECORD_KEY = "experiments_run"
LAST_NAME = "last.ckpt"


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # As tensors and ints: a weights-only load accepts them, it refuses numpy arrays.
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunStateCheckpoint(pl.Callback):
    """Saves RNG state and the run record into every checkpoint; restores the RNG on resume.

    The state is captured when the checkpoint is written (end of an epoch's validation), and put
    back when training restarts, right before the next epoch draws anything — the same point in
    the random streams an uninterrupted run is at.
    """

    def __init__(self, config_yaml: str) -> None:
        self.config_yaml = config_yaml
        self._pending_rng: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        logger = trainer.logger
        checkpoint[RECORD_KEY] = {
            "mlflow_run_id": getattr(logger, "run_id", None),
            "tracking_uri": getattr(logger, "_tracking_uri", None),
            "config": self.config_yaml,
            "rng": _rng_state(),
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._pending_rng = (checkpoint.get(RECORD_KEY) or {}).get("rng")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None


def _refuse_non_checkpoint_file(file: Path) -> None:
    """Refuse what cannot be a checkpoint before torch reads it: a file that is not a zip archive is
    unpickled by torch's legacy loader, which fails on arbitrary bytes with any exception type."""
    import zipfile

    if file.is_dir():
        example = next(iter(sorted(file.glob("*.ckpt"))), None)
        hint = f", e.g. {str(example)!r}" if example else ""
        raise UserError(f"{str(file)!r} is a directory, not a checkpoint file; pass a .ckpt file{hint}.")
    if not file.is_file():
        raise UserError(f"Checkpoint {str(file)!r} does not exist.")
    if zipfile.is_zipfile(file):
        return
    with file.open("rb") as stream:
        starts_as_zip = stream.read(4) == b"PK\x03\x04"
    if starts_as_zip:  # the start of an archive without its end: an interrupted write or copy
        raise UserError(f"Checkpoint {str(file)!r} is corrupt or not a PyTorch checkpoint (a truncated zip archive).")
    raise UserError(
        f"{str(file)!r} is not a checkpoint file written by `experiments train` (those are PyTorch zip archives "
        "such as checkpoints/last.ckpt in a run dir)."
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint weights-only (no arbitrary unpickling); any problem is one clear sentence."""
    import pickle
    import zipfile

    file = Path(path).expanduser()
    _refuse_non_checkpoint_file(file)
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"Checkpoint {str(file)!r} holds Python objects beyond tensors and plain values, so it was not "
            "written by `experiments train`; it is not unpickled, for safety."
        ) from None
    # A damaged pickle inside the archive stops the unpickler anywhere: an empty stack, an unknown memo key.
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"Checkpoint {str(file)!r} is corrupt or not a PyTorch checkpoint ({reason}).") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"Checkpoint {str(file)!r} is not a Lightning training checkpoint (it has no state_dict).")
    return checkpoint


def run_record(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """What `RunStateCheckpoint` stored: run id, store, config; None for checkpoints made elsewhere."""
    record = checkpoint.get(RECORD_KEY)
    return record if isinstance(record, dict) and record.get("config") else None


def check_fits(checkpoint: dict[str, Any], module: torch.nn.Module, path: str | Path) -> None:
    """Refuse a checkpoint of another architecture before Lightning fails on it with a long traceback."""
    saved = checkpoint["state_dict"]
    expected = module.state_dict()
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise UserError(
            f"Checkpoint {str(path)!r} was saved from a different model ({'no' if missing else 'an extra'} "
            f"weight {example!r}); it does not fit this config."
        )
    for key, tensor in expected.items():
        if tuple(saved[key].shape) != tuple(tensor.shape):
            raise UserError(
                f"Checkpoint {str(path)!r} was saved from a different model ({key} has shape "
                f"{tuple(saved[key].shape)}, this config needs {tuple(tensor.shape)}); it does not fit this config."
            )


def checked_checkpoint(path: str | None, module: torch.nn.Module) -> str | None:
    """`path` once it is known to load weights-only and to fit `module` (None passes through)."""
    if not path:
        return None
    check_fits(read_checkpoint(path), module, path)
    return str(Path(path).expanduser())


def last_checkpoint(callbacks: list[ModelCheckpoint]) -> Path | None:
    """The epoch-end `last.ckpt` (of the monitor-less `last_checkpoint` callback), if written yet."""
    for callback in callbacks:
        if callback.dirpath and (Path(callback.dirpath) / LAST_NAME).is_file():
            return Path(callback.dirpath) / LAST_NAME
    return None


def checkpoint_files(callbacks: list[ModelCheckpoint], which: str) -> list[Path]:
    """The files `log_checkpoints` names: best, last, all (every .ckpt of the run) or none."""
    if which == "all":
        folders = {Path(c.dirpath) for c in callbacks if c.dirpath}
        return sorted(file for folder in folders for file in folder.glob("*.ckpt"))
    files: list[Path] = []
    if which == "best":
        best = next((c.best_model_path for c in callbacks if c.monitor and c.best_model_path), "")
        files = [Path(best)] if best and Path(best).is_file() else []
    elif which == "last":
        last = last_checkpoint(callbacks)
        files = [last] if last else []
    return files


def log_checkpoints(logger: Any, callbacks: list[ModelCheckpoint], which: str) -> list[Path]:
    """Copy the chosen checkpoints to the run's MLflow artifacts under `checkpoints/`."""
    files = checkpoint_files(callbacks, which)
    for file in files:
        logger.experiment.log_artifact(logger.run_id, str(file), artifact_path="checkpoints")
    return files
