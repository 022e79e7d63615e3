"""The import contracts of pyproject.toml ([tool.importlinter]) hold.

Run here as well as in .ci/run so that a change that breaks one, or renames a module a
contract names, fails the test suite every engineer runs before landing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    tool = Path(sys.executable).parent / "lint-imports"
    command = str(tool) if tool.exists() else shutil.which("lint-imports")
    if command is None:
        pytest.skip("lint-imports is not installed (the dev extra installs it)")
    done = subprocess.run(
        [command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
