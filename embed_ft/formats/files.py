"""Atomic file writes: the one definition of how the product replaces a file without ever exposing half of it.

A temporary file is written in the target's folder (so the rename stays on one file system), flushed and fsynced,
then renamed over the target with `os.replace`. On any failure the temporary file is removed and a previous file
at the target is left untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Stream the content through ``write(binary_file)`` into a temporary file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text, written atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
