"""The linters and the type checker of `./dev lint` (configured in pyproject.toml), as one test of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# (what, command): each runs from the checkout's root with the configuration in pyproject.toml.
CHECKS = [
    ("ruff check", [str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", "."]),
    ("ruff format --check", [str(BIN / "ruff"), "format", "--no-cache", "--check", "."]),
    ("mypy", [sys.executable, "-m", "mypy"]),
]


@pytest.mark.slow
def test_ruff_and_mypy_find_nothing():
    """Lint findings (pycodestyle, pyflakes, import order, bugbear; compound asserts), formatting and types (strict
    on nemo/, formats/ and platform/services/): every tool runs, and the first finding of each is reported."""
    failures = []
    for what, command in CHECKS:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            failures.append(f"{what} (exit {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    assert failures == [], "\n\n".join(failures)
