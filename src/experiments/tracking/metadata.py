"""What a run records so it can be reproduced without the person who ran it."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "lightning", "hydra-core", "mlflow", "torchmetrics", "numpy", "scikit-learn", "experiments")


@functools.cache  # read once per process: its code is what it imported then, whatever is edited meanwhile
def git_state(root: Path) -> dict[str, str]:
    """Commit, dirty flag and diff of the working tree (empty values outside a git checkout)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], check=False, cwd=root, capture_output=True, text=True,
                                 timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD").strip()
    if not commit:
        return {"commit": "", "dirty": "unknown", "diff": ""}
    status = git("status", "--porcelain", "--untracked-files=no")
    diff = git("diff", "HEAD") if status.strip() else ""
    return {"commit": commit, "dirty": str(bool(status.strip())).lower(), "diff": diff}


def package_versions() -> dict[str, str]:
    return dict(_installed_versions())


@functools.cache  # what is installed does not change under a running process; a sweep asks once per run
def _installed_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def environment_tags() -> dict[str, str]:
    tags = {f"env.{name}": version for name, version in package_versions().items()}
    tags["env.python"] = sys.version.split()[0]
    tags["env.platform"] = platform.platform()
    return tags
