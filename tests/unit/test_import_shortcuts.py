"""torchmetrics is imported without the scipy.signal it loads for nothing, and scipy.signal still works."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_training_imports_skip_scipy_signal_yet_it_imports_normally_afterwards() -> None:
    printed = _run(
        "import sys\n"
        "from experiments.import_shortcuts import import_torchmetrics\n"
        "import_torchmetrics()\n"
        "import lightning.pytorch, torchmetrics.functional.audio\n"
        "print('scipy.signal' in sys.modules)\n"
        "from scipy.signal import butter\n"
        "import scipy.signal\n"
        "print(scipy.signal.__file__.endswith('__init__.py'), butter is scipy.signal.butter)\n"
    )
    assert printed.splitlines() == ["False", "True True"]


def test_anything_asked_of_the_stand_in_besides_hamming_comes_from_the_real_module() -> None:
    printed = _run(
        "import sys\n"
        "from experiments.import_shortcuts import _ScipySignalStandIn\n"
        "stand_in = sys.modules['scipy.signal'] = _ScipySignalStandIn()\n"
        "print(len(stand_in.hamming(5)), 'scipy.signal' in sys.modules and sys.modules['scipy.signal'] is not stand_in)\n"
        "import scipy.signal.windows\n"  # a submodule import asks the stand-in for __path__
        "print(callable(stand_in.butter), sys.modules['scipy.signal'].butter is stand_in.butter)\n"
    )
    assert printed.splitlines() == ["5 True", "True True"]
