"""Static checks run with the tests: mypy over the files and at the strictness that
pyproject.toml's ``[tool.mypy]`` sets, with 0 errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_nothing():
    mypy = shutil.which("mypy") or str(Path(sys.executable).parent / "mypy")
    if not Path(mypy).exists():
        pytest.skip("mypy is not installed (pip install -e '.[test]' installs it)")
    # no paths on the command line: `files` in [tool.mypy] says what is checked
    proc = subprocess.run([mypy, "--no-error-summary", "--hide-error-context"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
