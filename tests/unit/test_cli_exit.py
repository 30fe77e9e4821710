"""The CLI's fast exit: hooks that matter still run, torch's exit-time unregistering does not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import weakref
from pathlib import Path


def test_exit_still_removes_temporary_folders_and_flushes_output(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import atexit, sys, tempfile
        import torch
        from experiments import cli
        left_open = tempfile.TemporaryDirectory(dir=sys.argv[1])  # cleaned by its exit-time finalizer
        atexit.register(lambda: print("atexit hook ran"))
        print(left_open.name, end=" ")
        cli._exit_fast(3)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    folder, message = done.stdout.split(" ", 1)
    assert message.strip() == "atexit hook ran"
    assert Path(folder).parent == tmp_path and not Path(folder).exists()


def test_only_torchs_operator_library_finalizers_are_skipped(tmp_path: Path) -> None:
    import tempfile

    import torch.library

    from experiments.cli import _skip_torch_library_teardown

    folder = tempfile.TemporaryDirectory(dir=tmp_path)
    library = torch.library.Library("experiments_exit_test", "DEF")  # registers a finalizer like torch's own
    try:
        _skip_torch_library_teardown()
        finalizers = weakref.finalize._registry.items()  # type: ignore[attr-defined]
        torch_ones = [f for f, info in finalizers if info.func.__module__ == "torch.library"]
        folders = [f for f, info in finalizers if folder.name in info.args]
        assert torch_ones and not any(f.atexit for f in torch_ones)
        assert folders and all(f.atexit for f in folders)  # the temporary folder is still removed at exit
    finally:
        folder.cleanup()
        del library
