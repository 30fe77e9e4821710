"""What changed since a run was recorded: code, package versions, Python, platform, data.

A reproduction (or a resumed run) is only expected to match when these agree; each difference is
reported, and the ones that can change numbers count for `--strict`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from experiments.paths import project_root
from experiments.tracking.metadata import PACKAGES, environment_tags, git_state

FINGERPRINT_TAG = "data.fingerprint"


@dataclass(frozen=True)
class Drift:
    what: str
    recorded: str
    current: str
    # Platform strings differ between any two hosts (kernel build); they are shown, never refused.
    blocking: bool = True

    def describe(self) -> str:
        return f"{self.what}: recorded {self.recorded}, now {self.current}"


def _short_diff(diff: str) -> str:
    if not diff:
        return "clean tree"
    return f"uncommitted diff {hashlib.sha256(diff.encode()).hexdigest()[:10]}"


def code_drift(tags: Mapping[str, str], recorded_diff: str) -> list[Drift]:
    """Same commit and the same uncommitted diff (or none) means the same code."""
    git = git_state(project_root())
    recorded_commit = tags.get("git.commit", "")
    if not recorded_commit or not git["commit"]:
        if recorded_commit != git["commit"]:
            return [Drift("git commit", recorded_commit or "unknown", git["commit"] or "unknown")]
        return []
    if recorded_commit != git["commit"]:
        return [Drift("git commit", recorded_commit[:12], git["commit"][:12])]
    if recorded_diff != git["diff"]:
        return [Drift("uncommitted changes", _short_diff(recorded_diff), _short_diff(git["diff"]))]
    return []


def environment_drift(tags: Mapping[str, str]) -> list[Drift]:
    current = environment_tags()
    drifts = []
    for name in (*PACKAGES, "python"):
        key = f"env.{name}"
        if key in tags and tags[key] != current.get(key):
            drifts.append(Drift(f"package {name}" if name != "python" else "python", tags[key], current[key]))
    platform = tags.get("env.platform")
    if platform and platform != current["env.platform"]:
        drifts.append(Drift("platform", platform, current["env.platform"], blocking=False))
    return drifts


def data_drift(tags: Mapping[str, str], fingerprint: str) -> list[Drift]:
    recorded = tags.get(FINGERPRINT_TAG)
    if recorded and recorded != fingerprint:
        return [Drift("dataset fingerprint", recorded, fingerprint)]
    return []
