"""A user's Hydra callback, added to real sweeps with `+hydra.callbacks.reader._target_=…`: as each job
starts, it reads the job's saved `.hydra/overrides.yaml` and notes what it found in `<out_dir>/<job num>`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class JobStartReader(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        saved = Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir) / "overrides.yaml"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / str(config.hydra.job.num)).write_text(saved.read_text() if saved.exists() else "missing")
