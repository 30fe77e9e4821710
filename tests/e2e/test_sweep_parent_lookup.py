"""A sweep's parent run given to reproduce, eval or resume: one sentence pointing at its child runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FAST, parent_and_children, run_cli, store_uri

pytestmark = pytest.mark.e2e


def _refusal(args: list[str], cwd: Path) -> str:
    result = run_cli(args, cwd=cwd)
    assert result.returncode == 2, (args, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (args, result.stderr[-3000:])
    return lines[0]


def test_a_sweep_parent_is_refused_with_a_child_run_to_use_instead(tmp_path: Path, outputs: Path) -> None:
    swept = run_cli(["train", "-m", f"paths.output_dir={outputs}", *FAST, "trainer.max_epochs=1",
                     "data.options.n_samples=200", "seed=1,2"], cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr[-3000:]
    client, parent, children = parent_and_children(outputs)
    first, second = sorted(children, key=lambda run: run.info.start_time)
    pid, uri = parent.info.run_id, store_uri(outputs)
    about = f"error: MLflow run {pid} is the parent run of a sweep"
    label = f"{first.info.run_name} ({first.info.run_id})"

    assert _refusal(["reproduce", pid, "--tracking-uri", uri], tmp_path) == (
        f"{about}; reproduce one of its 2 child runs, e.g. {label}.")
    assert _refusal(["eval", f"run_id={pid}", f"tracking_uri={uri}"], tmp_path) == (
        f"{about}; evaluate one of its 2 child runs, e.g. {label}.")
    resume = ["train", f"paths.output_dir={outputs}", *FAST, f"resume={pid}"]
    assert _refusal(resume, tmp_path) == (
        f"{about} whose child runs all finished, so there is nothing to resume; "
        f"rerun one with `experiments reproduce {first.info.run_id}`.")

    client.set_terminated(second.info.run_id, "KILLED")  # as if the sweep had been interrupted in that job
    assert _refusal(resume, tmp_path) == (
        f"{about}; resume one of its unfinished child runs (1 of 2), e.g. {second.info.run_name} "
        f"({second.info.run_id}).")
    # Nothing was half-written: no reproduction, evaluation or continued run.
    assert len(client.search_runs([parent.info.experiment_id])) == 3
    assert client.get_run(pid).data.metrics == parent.data.metrics
