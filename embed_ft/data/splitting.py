"""Leak-free, seeded training/validation/testing splits of clean triplets, and where each split's file lives.

Split policy (`split_triplets`): rows are grouped by query text and whole groups are dealt out in a seeded random
order, first to the held-out test split, then validation, then training, so a query never lands in two splits.
``sample_size`` counts the training + validation rows; the test rows come on top of it. The last group a split takes
is cut to hit the requested size exactly; its cut-off rows are left out of every split (not sampled). The defaults
(seed 42, 68,400 sampled, 5% validation, 1,000 test) give the tutorial's 64,980 / 3,420 plus 1,000 test rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SourceError

log = logging.getLogger(__name__)

SPLITS = ("training", "validation", "testing")


def split_paths(root: Path) -> dict[str, Path]:
    root = Path(root)
    return {name: root / name / f"{name}.jsonl" for name in SPLITS}


@dataclass(frozen=True)
class SplitOptions:
    """How many rows each split gets. `sample_size` = training + validation rows; test rows come on top.

    `sample_fraction` (of the clean rows) replaces `sample_size`; both None = every row left after the test split.
    `validation_size` < 1 is a fraction of the sample, >= 1 a whole number of rows.
    """

    sample_size: Optional[int] = 68_400
    sample_fraction: Optional[float] = None
    validation_size: float = 0.05
    test_size: int = 1_000
    seed: int = 42

    def validate(self) -> None:
        if self.sample_size is not None and self.sample_fraction is not None:
            raise ValueError("set either sample_size or sample_fraction, not both")
        if self.sample_size is not None and self.sample_size < 2:
            raise ValueError(f"sample_size must be >= 2 (training + validation rows), got {self.sample_size}")
        if self.sample_fraction is not None and not 0 < self.sample_fraction <= 1:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")
        if self.validation_size <= 0 or (
            self.validation_size >= 1 and self.validation_size != int(self.validation_size)
        ):
            raise ValueError(
                "validation_size must be a fraction in (0, 1) or a "
                f"whole number of rows >= 1, got {self.validation_size}"
            )
        if self.test_size < 1:
            raise ValueError(f"test_size must be >= 1 (the held-out split may not be empty), got {self.test_size}")


@dataclass
class SplitResult:
    indices: dict[str, np.ndarray]  # split name -> row indices into the clean table, in output order
    requested: dict[str, int]
    notes: list[str]
    distinct_queries: int


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def split_triplets(
    queries: pa.Array | pa.ChunkedArray,
    options: SplitOptions = SplitOptions(),
    *,
    query_codes: Optional[np.ndarray] = None,
) -> SplitResult:
    """Leak-free, seeded train/validation/test row indices for rows identified by their query text.

    `query_codes` (group numbers 0..k-1 per row, e.g. `CleanResult.query_codes`) spares hashing the texts again.
    """
    options.validate()
    queries = queries.combine_chunks() if isinstance(queries, pa.ChunkedArray) else queries
    n = len(queries)
    if query_codes is None:
        query_codes = np.asarray(pc.dictionary_encode(queries).indices, dtype=np.int64)
    if len(query_codes) != n:
        raise ValueError(f"query_codes has {len(query_codes)} entries for {n} rows")
    codes = query_codes
    groups = int(codes.max()) + 1 if n else 0
    if groups < 3:
        raise SourceError(
            f"a leak-free training/validation/testing split needs at least 3 distinct queries; "
            f"the clean data has {n} rows and {groups} distinct queries"
        )
    notes: list[str] = []

    # Requested sizes, then clamped to what the source holds: the test split keeps its requested size up to a
    # fifth of the rows (a small source still gets a usable held-out set), the sample takes the rest.
    test_req = options.test_size
    if options.sample_fraction is not None:
        sample_req = max(2, _round_half_up(options.sample_fraction * n))
    elif options.sample_size is not None:
        sample_req = options.sample_size
    else:
        sample_req = max(2, n - test_req)
    if test_req + sample_req > n:
        scaled_test = max(1, min(test_req, n // 5))
        notes.append(
            f"the clean source has {n} rows, fewer than the {test_req} test + {sample_req} sampled requested: "
            f"clamped to {scaled_test} test + {n - scaled_test} sampled"
        )
        test_req, sample_req = scaled_test, n - scaled_test
    if options.validation_size < 1:
        val_req = max(1, _round_half_up(options.validation_size * sample_req))
    else:
        val_req = int(options.validation_size)
    if val_req >= sample_req:
        notes.append(f"validation_size {val_req} leaves no training rows in a sample of {sample_req}: clamped")
        val_req = max(1, sample_req // 2)
    requested = {"testing": test_req, "validation": val_req, "training": sample_req - val_req}

    # Rows ordered by (shuffled group, random tie-break): each split is a run of whole groups in this order.
    rng = np.random.default_rng(options.seed)
    group_rank = rng.permutation(groups)
    row_rank = group_rank[codes]
    # One int64 sort key (group rank, then a random 32-bit tie-break) sorts faster than a two-key lexsort.
    tie_break = rng.integers(0, 1 << 32, size=n, dtype=np.int64)
    order = np.argsort((row_rank.astype(np.int64) << 32) | tie_break)
    group_end = np.cumsum(np.bincount(row_rank, minlength=groups))  # rows up to and including group g (ranked)

    indices: dict[str, np.ndarray] = {}
    start_group = 0
    reserve = {"testing": 2, "validation": 1, "training": 0}  # groups left for the splits after this one
    take_all = options.sample_size is None and options.sample_fraction is None
    for name in ("testing", "validation", "training"):
        base = int(group_end[start_group - 1]) if start_group else 0
        if name == "training" and take_all:  # "every row left": no target to fall short of
            requested[name] = target = n - base
        else:
            target = requested[name]
        needed = int(np.searchsorted(group_end[start_group:], base + target, side="left")) + 1
        take = max(1, min(needed, groups - start_group - reserve[name]))
        end_group = start_group + take
        available = int(group_end[end_group - 1]) - base
        rows = min(target, available)
        if rows < target:
            notes.append(f"{name} got {rows} rows of the {target} requested ({take} query groups available)")
        chosen = order[base : base + rows]
        indices[name] = chosen[rng.permutation(rows)]  # shuffle so one query's rows are not adjacent
        start_group = end_group
    for note in notes:
        log.warning(note)
    return SplitResult(indices=indices, requested=requested, notes=notes, distinct_queries=groups)
