"""JSON the platform can store and answer again: no NaN/Infinity, no overflowing numbers, no lone surrogates, no
nesting deeper than ``MAX_DEPTH``.

Python's ``json`` reads ``NaN``, ``Infinity``, ``1e999`` (as inf) and lone-surrogate escapes (``"\\ud800"``), but
such values cannot be written back as JSON (Starlette answers with ``allow_nan=False`` and UTF-8). ``loads`` is
the reader of every request body (api/body.py, the commit lines) and refuses them naming the field path;
``dumps`` is the store's writer and refuses the same values, so nothing is stored that cannot be returned.
Nesting is bounded too (``JSONDepthError``): Python's reader and writer recurse, and a document ~1,000 levels deep
raises ``RecursionError`` wherever it is read again (a stored row would stop every later start-up).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# JSON integers beyond int64 are refused: most JSON readers (and SQLite) cannot hold them.
MAX_INT = 2**63 - 1
# Arrays/objects nested deeper than this are refused: far beyond any document of the NeMo API (custom_fields and
# hyperparameters nest 2-3 levels), far below Python's recursion limit (1,000).
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONValueError(ValueError):
    """A value JSON cannot carry back: ``field`` is its path in the document (``hyperparameters.seed``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class JSONDepthError(JSONValueError):
    """A document nested deeper than ``MAX_DEPTH``: ``field`` is the path where the limit was passed."""

    def __init__(self, field: str) -> None:
        field = field if len(field) <= 120 else field[:100] + "..."
        super().__init__(
            field,
            f"the JSON document is nested deeper than the limit of {MAX_DEPTH} levels "
            "(arrays/objects within arrays/objects)",
        )


def depth_problem(value: Any, prefix: str = "") -> str | None:
    """The field path where ``value`` nests deeper than ``MAX_DEPTH`` (walked without recursion), or None."""
    stack: list[tuple[Any, int, list[Any]]] = [(value, 0, [prefix] if prefix else [])]
    while stack:
        item, depth, parts = stack.pop()
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, (list, tuple)):
            children = enumerate(item)
        else:
            continue
        if depth >= MAX_DEPTH:
            return path_text(parts)
        stack.extend((child, depth + 1, [*parts, key]) for key, child in children)
    return None


class _Refused:
    """Stands in for a number the reader refuses, until the walk finds its path."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def _constant(text: str) -> _Refused:
    return _Refused(text, f"{text} is not a valid value: JSON numbers must be finite")


def _float(text: str) -> float | _Refused:
    value = float(text)
    if math.isfinite(value):
        return value
    return _Refused(text, f"the number {text[:40]} is out of range (it overflows to infinity)")


def _int(text: str) -> int | _Refused:
    try:
        value = int(text)
    except ValueError:  # more digits than Python converts
        return _Refused(text, f"the integer of {len(text)} digits is out of range (at most {MAX_INT})")
    if -MAX_INT - 1 <= value <= MAX_INT:
        return value
    return _Refused(text, f"the integer {text[:40]} is out of range (-2**63 .. 2**63-1)")


def path_text(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def find_problem(value: Any, parts: list[Any] | None = None) -> tuple[str, str] | None:
    """(field path, what is wrong) of the first value JSON cannot carry back, or None."""
    parts = parts if parts is not None else []
    if isinstance(value, _Refused):
        return path_text(parts), value.reason
    if isinstance(value, float) and not math.isfinite(value):
        return path_text(parts), f"{value} is not a valid value: JSON numbers must be finite"
    if isinstance(value, str):
        match = _SURROGATE.search(value)
        if match:
            return path_text(parts), (
                f"the text holds a lone surrogate (\\u{ord(match.group()):04x} at index "
                f"{match.start()}) that UTF-8 cannot encode"
            )
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _SURROGATE.search(key):
                return path_text([*parts, key.encode("utf-8", "backslashreplace").decode()]), (
                    "the field name holds a lone surrogate that UTF-8 cannot encode"
                )
            problem = find_problem(item, [*parts, key])
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = find_problem(item, [*parts, index])
            if problem:
                return problem
    return None


def loads(data: bytes | str, prefix: str = "") -> Any:
    """``json.loads`` that refuses what ``dumps`` could not write: ``JSONValueError`` naming the field path
    (after ``prefix``). Malformed JSON raises ``json.JSONDecodeError``/``UnicodeDecodeError`` as usual."""
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:  # nested ~1,000 deep: the reader gave up before the limit could be measured
        raise JSONDepthError(prefix) from None
    deep = depth_problem(value, prefix)
    if deep is not None:
        raise JSONDepthError(deep)
    problem = find_problem(value, [prefix] if prefix else [])
    if problem:
        raise JSONValueError(*problem)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON text of ``value`` that reads back to the same value; ``JSONValueError`` naming the field otherwise."""
    deep = depth_problem(value)
    if deep is not None:
        raise JSONDepthError(deep)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, **kwargs)
    except ValueError:
        text = None
    if text is None or _SURROGATE.search(text):
        problem = find_problem(value) or ("", "the document holds a value JSON cannot carry")
        raise JSONValueError(*problem)
    return text


def repaired(value: Any) -> Any:
    """``value`` with non-finite numbers as None and lone surrogates as U+FFFD (rows an older version stored)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {repaired(k): repaired(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repaired(v) for v in value]
    return value
