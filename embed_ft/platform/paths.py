"""Validation of names and paths that arrive from clients, and containment of every file the platform writes.

Everything a request names (namespaces, repo and entity names, file paths inside a repo) passes through here
before it touches the disk, so that no request can read or write outside the platform home.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# Limits in bytes of the UTF-8 encoding (what the file system counts: NAME_MAX is 255 bytes on Linux, so 100 CJK
# characters, 300 bytes, are too long for one file name although they are 100 characters).
MAX_SEGMENT_LENGTH = 255
MAX_PATH_LENGTH = 1024

# Namespaces and names: letters, digits and a few punctuation marks. `@` is in because Entity Store
# model names carry a version or job id (`all-minilm-l6-v2@v1`, `model@cust-...`).
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+=-]*")


class InvalidPathError(ValueError):
    """A client-supplied name or path is unsafe or malformed (answered with 400)."""


def _show(value: object) -> str:
    """A value for an error message: repr, shortened so a 10 kB name does not flood the logs."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"...' ({len(str(value))} characters)"


def _too_long(value: str, limit: int) -> str | None:
    """Why ``value`` is over ``limit`` bytes (UTF-8), or None."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size <= limit:
        return None
    chars = f" ({len(value)} characters)" if size != len(value) else ""
    return f"is {size} bytes long in UTF-8{chars}; the limit is {limit} bytes"


def validate_name(value: object, what: str = "name") -> str:
    """Check one namespace / repo / entity name; return it unchanged.

    ``what`` names the field in the error ("namespace", "dataset name", ...).
    """
    if not isinstance(value, str) or not value:
        raise InvalidPathError(f"{what} must be a non-empty string, got {_show(value)}")
    if "\x00" in value:
        raise InvalidPathError(f"{what} {_show(value)} contains a NUL byte")
    too_long = _too_long(value, MAX_SEGMENT_LENGTH)
    if too_long:
        raise InvalidPathError(f"{what} {too_long}")
    if value in (".", ".."):
        raise InvalidPathError(f"{what} {_show(value)} is not allowed")
    if not _NAME_RE.fullmatch(value):
        raise InvalidPathError(
            f"{what} {_show(value)} is not valid: use letters, digits and '_.@+=-', starting with a letter, "
            "digit or '_' (no '/', '\\', '..' or spaces)"
        )
    return value


def validate_repo_path(value: object, what: str = "file path") -> str:
    """Check a relative POSIX path inside a repo (``training/training.jsonl``); return it unchanged.

    Rejects empty, absolute, ``.``/``..`` segments, empty segments, backslashes, NUL and other control
    characters, and names over the length limits.
    """
    if not isinstance(value, str) or not value:
        raise InvalidPathError(f"{what} must be a non-empty string, got {_show(value)}")
    if "\x00" in value:
        raise InvalidPathError(f"{what} {_show(value)} contains a NUL byte")
    too_long = _too_long(value, MAX_PATH_LENGTH)
    if too_long:
        raise InvalidPathError(f"{what} {too_long}")
    if "\\" in value:
        raise InvalidPathError(f"{what} {_show(value)} contains a backslash; use '/' as the separator")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidPathError(f"{what} {_show(value)} contains a control character")
    if value.startswith("/") or re.match(r"[A-Za-z]:", value):
        raise InvalidPathError(f"{what} {_show(value)} is absolute; paths must be relative to the repo root")
    for segment in value.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidPathError(f"{what} {_show(value)} has an empty, '.' or '..' segment")
        too_long = _too_long(segment, MAX_SEGMENT_LENGTH)
        if too_long:
            raise InvalidPathError(f"{what} has a segment that {too_long}")
    return value


def ensure_within(root: Path, candidate: Path) -> Path:
    """Resolve ``candidate`` (following symlinks) and check it lies inside ``root``; return the resolved path."""
    root_resolved = Path(root).resolve()
    resolved = Path(candidate).resolve()
    if resolved != root_resolved and not resolved.is_relative_to(root_resolved):
        raise InvalidPathError(f"path {_show(str(candidate))} resolves outside {root_resolved}")
    return resolved


def safe_join(root: Path, relative: str, what: str = "file path") -> Path:
    """``root / relative`` after validating ``relative`` and checking the result stays inside ``root``."""
    validate_repo_path(relative, what)
    return ensure_within(root, Path(root).joinpath(*PurePosixPath(relative).parts))
