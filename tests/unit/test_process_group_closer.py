"""A rank's gloo process group is destroyed as its process exits (left to the interpreter's teardown, gloo's
threads now and then abort a finished `ddp_spawn` rank). Each check runs in a fresh interpreter, as a rank is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from experiments.paths import project_root

SCRIPT = """
import atexit, socket, sys
import torch.distributed as dist
from experiments.callbacks.process_group import ProcessGroupCloser

if sys.argv[1] == "group":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
closer = ProcessGroupCloser()
closer.setup(None, None, "fit")
closer.setup(None, None, "test")  # Lightning sets up again for testing: still one destruction
before = dist.is_initialized()
atexit._run_exitfuncs()  # what the interpreter runs first as it exits
print(before, dist.is_initialized())
"""


def _run(tmp_path: Path, case: str) -> str:
    script = tmp_path / "rank.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True, timeout=120,
                          cwd=project_root(), check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_gloo_rank_destroys_its_process_group_as_it_exits(tmp_path: Path) -> None:
    assert _run(tmp_path, "group") == "True False"


def test_a_process_without_a_group_is_left_as_it_is(tmp_path: Path) -> None:
    assert _run(tmp_path, "none") == "False False"
