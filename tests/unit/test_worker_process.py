"""How a population's workers start: forked inside `forking` (the population host, once it has loaded what
they use) on the Python it was measured on, so they import nothing again, and then without the host's pipe
(whose end-of-file tells the sweep process the host is gone) or its SIGTERM handler; spawned otherwise.
The host forking its workers is exercised end to end in e2e/test_population_sweeps.py."""

from __future__ import annotations

import os
import select
import signal
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from experiments.worker_process import forking, start_worker, worker_context

LOADED_HERE = "_loaded_by_the_parent_only"
FORKS_HERE = sys.version_info[:2] == (3, 11) and sys.platform.startswith("linux")


def _what_the_worker_has(fd: int) -> dict[str, Any]:
    try:
        os.fstat(fd)
        holds_fd = True
    except OSError:
        holds_fd = False
    return {"loaded": LOADED_HERE in sys.modules, "holds_fd": holds_fd,
            "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=worker_context(), initializer=start_worker)


@pytest.fixture
def loaded_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("EXPERIMENTS_NO_SPEEDUPS", raising=False)
    monkeypatch.setitem(sys.modules, LOADED_HERE, types.ModuleType(LOADED_HERE))
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the host's own handler
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.skipif(not FORKS_HERE, reason="workers are forked on Linux with Python 3.11 only (where it was measured)")
def test_a_worker_started_while_forking_has_what_was_loaded_and_not_the_hosts_pipe(loaded_here: None) -> None:
    reading, writing = os.pipe()
    try:
        with forking(close_in_child=[writing]):
            pool = _pool()
            has = pool.submit(_what_the_worker_has, writing).result(timeout=60)
        assert has == {"loaded": True, "holds_fd": False, "sigterm_default": True}
        # The host gone (its end closed here), the sweep process reads end-of-file at once, while the
        # forked worker still lives.
        os.close(writing)
        writing = -1
        ready, _, _ = select.select([reading], [], [], 5.0)
        assert ready and os.read(reading, 1) == b""
        assert pool.submit(os.getpid).result(timeout=60) != os.getpid()
        pool.shutdown()
    finally:
        os.close(reading)
        if writing >= 0:
            os.close(writing)


@pytest.mark.parametrize("switched_off", [False, True])
def test_workers_are_spawned_outside_forking_or_with_the_speed_up_off(
        loaded_here: None, switched_off: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if switched_off:
        monkeypatch.setenv("EXPERIMENTS_NO_SPEEDUPS", "worker_fork")
        with forking():
            pool = _pool()
    else:
        pool = _pool()
    try:
        has = pool.submit(_what_the_worker_has, 0).result(timeout=120)
    finally:
        pool.shutdown()
    assert not has["loaded"] and has["sigterm_default"]
