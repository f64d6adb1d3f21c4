"""Checks on written NeMo JSONL splits: every row in the product's exact format, and no query in two splits."""

from __future__ import annotations

from pathlib import Path

from ..formats.nemo_jsonl import iter_lines


def schema_problems(path: Path, limit: int = 5) -> tuple[int, list[str]]:
    """(rows, problems) of a split written by this product: every line checked with the strict NeMo row rule
    (keys query, pos_doc, neg_doc in that order, non-empty texts, at least one negative). Problems name the file
    and line; at most `limit` are listed."""
    problems: list[str] = []
    rows = 0
    bad = 0
    for line in iter_lines(path, strict=True):
        rows += 1
        if line.problem:
            bad += 1
            if len(problems) < limit:
                problems.append(f"{path}:{line.number}: {line.problem}")
    if bad > limit:
        problems.append(f"... {bad - limit} more bad lines in {path}")
    return rows, problems


def split_queries(path: Path) -> set[str]:
    """The distinct query texts of a NeMo JSONL split (its valid rows)."""
    return {line.row["query"] for line in iter_lines(path) if line.problem is None}


def crossing_queries(paths: dict[str, Path]) -> dict[str, int]:
    """For each pair of splits, how many query texts occur in both (all zeros when leak-free)."""
    queries = {name: split_queries(Path(p)) for name, p in paths.items()}
    names = list(queries)
    return {f"{a}&{b}": len(queries[a] & queries[b]) for i, a in enumerate(names) for b in names[i + 1 :]}
