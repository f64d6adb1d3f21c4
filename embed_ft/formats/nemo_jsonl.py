"""NeMo triplet JSONL: the one definition of a training row, its check, its reading and its reference encoding.

One JSON object per line: ``{"query": str, "pos_doc": str, "neg_doc": [str, ...]}`` (the NeMo Customizer's
embedding SFT format). The data layer checks the splits it writes against it, the local platform's training worker
reads its input with it.

Two levels of the same rule (`row_problem`):
- the wire rule: an object whose ``query`` and ``pos_doc`` are non-empty strings and whose ``neg_doc``, when given,
  is an array of non-empty strings (a row without hard negatives trains on in-batch negatives only); other keys
  are ignored;
- ``strict=True`` adds what this product's writer guarantees: exactly the keys query, pos_doc, neg_doc in that
  order, and at least one negative.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

FIELDS = ("query", "pos_doc", "neg_doc")
# Problems listed per file before "and N more".
MAX_LISTED_PROBLEMS = 5
# json.dumps leaves U+0085, U+2028 and U+2029 raw; readers that split lines like str.splitlines() would cut a row
# there, so the writer escapes them too (still the same JSON string).
LINE_BREAK_ESCAPES = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def row_problem(row: Any, *, strict: bool = False) -> Optional[str]:
    """What is wrong with one parsed row, or None when it is a valid triplet row (see the module docstring)."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    if strict and list(row) != list(FIELDS):
        return f"keys must be exactly query, pos_doc, neg_doc in that order, got {list(row)}"
    for key in ("query", "pos_doc"):
        if key not in row:
            return f"'{key}' is missing"
        if not isinstance(row[key], str) or not row[key].strip():
            return f"'{key}' must be a non-empty string"
    negatives = row.get("neg_doc", [])
    if isinstance(negatives, str):
        return "'neg_doc' must be an array of strings, got a string"
    if not isinstance(negatives, list):
        return f"'neg_doc' must be an array of strings, got {type(negatives).__name__}"
    if strict and not negatives:
        return "'neg_doc' must hold at least one negative"
    for i, negative in enumerate(negatives):
        if not isinstance(negative, str) or not negative.strip():
            return f"'neg_doc[{i}]' must be a non-empty string"
    return None


@dataclass(frozen=True)
class Line:
    """One non-blank line of a triplet file: its 1-based number, and either the parsed row or the problem."""

    number: int
    row: Any
    problem: Optional[str]


class TripletFileError(ValueError):
    """A triplet file that cannot be used; the message names the file (its label) and the broken lines."""


def iter_lines(path: str | Path, *, strict: bool = False) -> Iterator[Line]:
    """Every non-blank line of a UTF-8 JSONL file, parsed and checked. Raises OSError / UnicodeDecodeError as is."""
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Line(number, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            yield Line(number, row, row_problem(row, strict=strict))


def read_rows(path: str | Path, label: Optional[str] = None, *, strict: bool = False) -> list[dict[str, Any]]:
    """The rows of a triplet file as ``{"query", "pos_doc", "neg_doc": [...]}`` (other keys dropped).

    Raises :class:`TripletFileError` naming ``label`` (default: the path) when the file cannot be read, is not
    UTF-8, has a broken row (the first few are listed by line) or has no row at all.
    """
    label = label or str(path)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        for line in iter_lines(path, strict=strict):
            if line.problem:
                problems.append(f"line {line.number}: {line.problem}")
            else:
                row = line.row
                rows.append({"query": row["query"], "pos_doc": row["pos_doc"], "neg_doc": list(row.get("neg_doc", []))})
    except UnicodeDecodeError as exc:
        raise TripletFileError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise TripletFileError(f"{label}: cannot be read ({exc.strerror})") from exc
    if problems:
        shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        more_text = f"; and {more} more" if more > 0 else ""
        raise TripletFileError(f"{label}: {len(problems)} broken row(s): {shown}{more_text}")
    if not rows:
        raise TripletFileError(f"{label}: has no rows")
    return rows


def dumps_row(query: str, pos_doc: str, neg_doc: list[str]) -> str:
    """One row as the writer encodes it, newline included: `json.dumps` (UTF-8 kept) with line breaks escaped."""
    row = {"query": query, "pos_doc": pos_doc, "neg_doc": list(neg_doc)}
    return json.dumps(row, ensure_ascii=False).translate(LINE_BREAK_ESCAPES) + "\n"
