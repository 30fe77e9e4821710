"""Where the project lives: config tree and default output dir (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> Path:
    """The repository root (src layout: src/experiments/paths.py → three levels up).

    `EXPERIMENTS_ROOT` overrides it, for installs outside a clone.
    """
    override = os.environ.get("EXPERIMENTS_ROOT")
    return Path(override).resolve() if override else Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    return project_root() / "conf"


def register_resolvers() -> None:
    """`${project_root:}` in configs; idempotent so every entry point may call it."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
