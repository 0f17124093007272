"""mypy on the library's public API (fast lane): `py.typed` promises types to users, so the
package must type-check (configuration: ``[tool.mypy]`` in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean() -> None:
    if shutil.which("mypy", path=str(Path(sys.executable).parent)) is None and shutil.which("mypy") is None:
        pytest.fail("mypy is a test dependency (pip install -e '.[test]')")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert (ROOT / "src" / "imagemesh" / "py.typed").exists()
