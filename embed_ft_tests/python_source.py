"""Parsing our own source files in tests, safely on CPython 3.11.7.

That release's ``ast.parse`` raises "AST constructor recursion depth mismatch" when the garbage collector runs a
finalizer (of an object an earlier test left, e.g. a CLI run's) in the middle of a parse; seen in test_architecture
after the `--backend helix` dry run. Parsing with the collector paused avoids it (no collection, so no finalizer,
runs inside the parse).
"""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_file(path: Path) -> ast.Module:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text("utf-8"), filename=str(path))
    finally:
        if was_enabled:
            gc.enable()
