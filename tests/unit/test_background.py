"""Side work (the learning-curve plot) runs in a forked child; a failed or hung child is redone here."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from experiments import background
from experiments.background import SideTask

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child is forked on Linux only")


def _write_pid(path: Path) -> None:
    path.write_text(str(os.getpid()))


def test_the_work_runs_in_another_process_while_this_one_goes_on(tmp_path) -> None:
    marker = tmp_path / "pid"
    task = SideTask(lambda: (time.sleep(0.3), _write_pid(marker)))
    assert not marker.exists()  # started, not waited for: this process is free meanwhile
    task.result()
    task.result()  # waiting again is harmless: the work is not redone
    assert task.forked and int(marker.read_text()) != os.getpid()


def test_work_that_fails_in_the_child_is_redone_in_this_process(tmp_path) -> None:
    parent, marker = os.getpid(), tmp_path / "pid"

    def work() -> None:
        if os.getpid() != parent:
            raise OSError("the child cannot draw")
        _write_pid(marker)

    SideTask(work).result()
    assert int(marker.read_text()) == parent


def test_a_hung_child_is_killed_and_its_work_redone(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(background, "CHILD_TIMEOUT_S", 0.5)
    parent, marker = os.getpid(), tmp_path / "pid"

    def work() -> None:
        if os.getpid() != parent:
            time.sleep(600)  # e.g. a lock copied into the child while another thread held it
        _write_pid(marker)

    task = SideTask(work)
    child = task._pid
    started = time.monotonic()
    task.result()
    assert time.monotonic() - started < 10
    assert int(marker.read_text()) == parent
    with pytest.raises(ChildProcessError):  # killed and reaped: no zombie left behind
        os.waitpid(child, os.WNOHANG)
