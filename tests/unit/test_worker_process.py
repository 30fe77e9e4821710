"""How a population's workers start: forked inside `forking` (the population host, once it has loaded what
they use) on the platform and Python it was measured on, so they import nothing again, and then without
the host's pipe (whose end-of-file tells the sweep process the host is gone) or its SIGTERM handler;
spawned where another thread runs, outside `forking`, or with the speed-up off. Each case runs in a fresh
process, as the host is one: this test process may hold other tests' threads. The host forking its
workers is exercised end to end in e2e/test_population_sweeps.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.worker_process import fork_measured

SCRIPT = '''
import json, os, select, signal, sys, threading, types
from concurrent.futures import ProcessPoolExecutor

from experiments.worker_process import forking, pool_options

LOADED_HERE = "_loaded_by_the_parent_only"


def what_the_worker_has(fd):
    try:
        os.fstat(fd)
        holds_fd = True
    except OSError:
        holds_fd = False
    return {"loaded": LOADED_HERE in sys.modules, "holds_fd": holds_fd,
            "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}


if __name__ == "__main__":
    case = sys.argv[1]
    sys.modules[LOADED_HERE] = types.ModuleType(LOADED_HERE)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the host's own handler
    if case == "thread":
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
    reading, writing = os.pipe()
    if case == "outside":
        pool = ProcessPoolExecutor(max_workers=1, **pool_options())
    else:
        with forking(close_in_child=[writing]):
            pool = ProcessPoolExecutor(max_workers=1, **pool_options())
    has = pool.submit(what_the_worker_has, writing).result(timeout=120)
    # The host gone (its end closed here): does this process read end-of-file while the worker lives?
    os.close(writing)
    ready, _, _ = select.select([reading], [], [], 5.0)
    has["eof_while_worker_lives"] = bool(ready) and os.read(reading, 1) == b""
    has["worker_alive"] = pool.submit(os.getpid).result(timeout=60) != os.getpid()
    pool.shutdown()
    if case == "thread":
        stop.set()
    print(json.dumps(has))
'''


def _worker_started(tmp_path: Path, case: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    script = tmp_path / "start_a_worker.py"
    script.write_text(SCRIPT)
    environment = {k: v for k, v in os.environ.items() if k != "EXPERIMENTS_NO_SPEEDUPS"}
    result = subprocess.run([sys.executable, str(script), case], check=False, capture_output=True, text=True,
                            timeout=300, env={**environment, **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not fork_measured(), reason="workers are forked on Linux with Python 3.11 only (where it was measured)")
def test_a_worker_started_while_forking_has_what_was_loaded_and_not_the_hosts_pipe(tmp_path: Path) -> None:
    assert _worker_started(tmp_path, "forking") == {
        "loaded": True, "holds_fd": False, "sigterm_default": True, "eof_while_worker_lives": True,
        "worker_alive": True}


@pytest.mark.parametrize(("case", "env"), [
    ("outside", None),  # not inside `forking`
    ("forking", {"EXPERIMENTS_NO_SPEEDUPS": "worker_fork"}),
    ("thread", None),  # another thread runs as `forking` is entered
])
def test_workers_are_spawned_outside_forking_with_the_speed_up_off_or_beside_another_thread(
        tmp_path: Path, case: str, env: dict[str, str] | None) -> None:
    has = _worker_started(tmp_path, case, env)
    assert not has["loaded"] and has["sigterm_default"] and has["worker_alive"]
