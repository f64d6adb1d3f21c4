"""The one rule for the names a user gives (experiments, datasets, output models): NeMo-safe object names."""

from __future__ import annotations

import re

# Pydantic (Rust regex) reads ``$`` as the end of the text; Python's ``re`` is used with ``fullmatch`` below, because
# ``re.match`` with ``$`` lets a trailing newline through.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)


def validate_name(field: str, value: str) -> str:
    """``value`` if it is a NeMo-safe object name: 1-63 lower-case letters, digits, '.', '_', '-'; else ValueError
    naming ``field``."""
    if not value or not _NAME.fullmatch(value):
        raise ValueError(
            f"{field} must be 1-63 characters of lower-case letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value
