"""What the last start-up of a home set aside instead of dying on it: ``<home>/set_aside.json``.

A start-up that meets a record it cannot read (a stored row, a repo's ``repo.json`` or manifest) serves the rest
of the home and names each such record here, with why and what to do; ``embed-ft platform status`` prints them.
Each start-up rewrites the file (and removes it when nothing is set aside).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from embed_ft.formats.files import atomic_write_text

SET_ASIDE_FILE = "set_aside.json"


@dataclass(frozen=True)
class SetAside:
    """One record a start-up did not use: ``what`` names it, ``reason`` says why, ``remedy`` what to do."""

    what: str
    reason: str
    remedy: str

    def line(self) -> str:
        return f"{self.what}: {self.reason} ({self.remedy})"


def record(home: Path, items: list[SetAside]) -> None:
    """Write the list of a start-up (no file when it is empty)."""
    path = Path(home) / SET_ASIDE_FILE
    if not items:
        path.unlink(missing_ok=True)
        return
    atomic_write_text(path, json.dumps([asdict(item) for item in items], indent=1))


def read(home: Path) -> list[SetAside]:
    """The list the last start-up wrote; an unreadable file is itself reported as one entry."""
    path = Path(home) / SET_ASIDE_FILE
    try:
        entries = json.loads(path.read_text("utf-8"))
        return [SetAside(str(e["what"]), str(e["reason"]), str(e["remedy"])) for e in entries]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError, KeyError) as exc:
        return [SetAside(str(path), f"cannot be read ({type(exc).__name__})", "the next start-up rewrites it")]
