"""Cleaning SPECTER-like triplets: any accepted layout -> (query, positive, negatives), bad rows dropped and counted.

Pure Python (Arrow + numpy), no Dagster. Accepted layouts (column names of the source):
- ``set``: a list ``[query, positive, negative, ...]`` (``embedding-data/SPECTER``); fewer than 3 items is a wrong
  arity;
- ``anchor``/``positive``/``negative`` (``sentence-transformers/specter``);
- ``query``/``positive``/``negatives`` (this package's normalised layout, e.g. triplets mined from a BEIR set),
  also ``pos_doc``/``neg_doc`` (the NeMo layout). A negatives column holds one string or a list of strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .arrow_strings import column, offsets_and_bytes, rebuild_lists
from .errors import SourceError

DEFAULT_MAX_TEXT_CHARS = 20_000
DROP_REASONS = (
    "missing_or_non_string",
    "wrong_arity",
    "empty_text",
    "too_long",
    "query_equals_positive",
    "duplicate_triplet",
)
# Normalised column -> accepted source names, in order of preference.
COLUMN_ALIASES = {
    "query": ("query", "anchor"),
    "positive": ("positive", "pos_doc"),
    "negatives": ("negatives", "negative", "neg_doc"),
}


def detect_layout(columns: Iterable[str], source: str = "source") -> str:
    """'set' or 'columns'; a `SourceError` naming the columns found and expected otherwise."""
    columns = list(columns)
    if "set" in columns:
        return "set"
    missing = [name for name, aliases in COLUMN_ALIASES.items() if not any(a in columns for a in aliases)]
    if not missing:
        return "columns"
    expected = " or ".join(
        [
            "`set` (list [query, positive, negative])",
            "`anchor`, `positive`, `negative`",
            "`query`, `positive`, `negatives`",
        ]
    )
    raise SourceError(
        f"source {source!r} lacks the expected columns: found {columns or 'no columns'}, expected {expected} "
        f"(no column for: {', '.join(missing)})"
    )


@dataclass
class CleanResult:
    """Valid, normalised triplets (Arrow: query, positive, negatives) and the count of dropped rows per reason."""

    table: pa.Table
    dropped: dict[str, int]
    input_rows: int
    mean_chars: dict[str, float] = field(default_factory=dict)  # query, pos_doc, neg_doc (per negative text)
    query_codes: Optional[np.ndarray] = None  # per clean row, its query's group number 0..k-1 (saves re-hashing)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def _as_table(data: Union[pa.Table, pd.DataFrame]) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"expected a pyarrow.Table or pandas.DataFrame, got {type(data).__name__}")


def _is_string_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _keep_rows(values: pa.Array, keep: np.ndarray) -> pa.Array:
    # Filtering copies every byte; most real sources lose no row at a given step.
    return values if keep.all() else values.filter(pa.array(keep))


def _strip(values: pa.Array) -> pa.Array:
    """utf8_trim_whitespace, skipped (no copy) when no string starts or ends with a space, control or non-ASCII byte."""
    values = values.cast(pa.large_string())
    offsets, data = offsets_and_bytes(values)
    starts, ends = offsets[:-1], offsets[1:]
    nonempty = ends > starts
    edges = np.concatenate([data[starts[nonempty]], data[ends[nonempty] - 1]])
    if not ((edges <= 0x20) | (edges >= 0x80)).any():
        return values
    return pc.utf8_trim_whitespace(values)


def _parse_json_lists(values: pa.Array) -> pa.Array:
    """A string column that holds JSON lists (a `set` column read from CSV) -> list<string>, bad cells -> null."""
    parsed = []
    for text in values.to_pylist():
        try:
            item = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            item = None
        ok = isinstance(item, list) and all(isinstance(x, str) or x is None for x in item)
        parsed.append(item if ok else None)
    return pa.array(parsed, type=pa.list_(pa.large_string()))


def _as_string_list(values: pa.Array, n: int) -> tuple[Optional[pa.Array], np.ndarray]:
    """A negatives/`set` column as list<large_string>; also the rows whose cell is missing or not all strings."""
    t = values.type
    if _is_string_type(t) and not pa.types.is_null(t) and values.null_count < len(values):
        # A string column: one negative per row, or a JSON list from CSV when it looks like one.
        sample = pc.drop_null(values).slice(0, 100).to_pylist()
        if sample and all(s.lstrip().startswith("[") for s in sample):
            values = _parse_json_lists(values)
        else:
            strings = values.cast(pa.large_string())
            values = pa.LargeListArray.from_arrays(pa.array(np.arange(n + 1), pa.int64()), strings)
            return values, np.asarray(strings.is_null())
    if pa.types.is_null(values.type):
        return None, np.ones(n, dtype=bool)
    if not _is_list_type(values.type) or not _is_string_type(values.type.value_type):
        return None, np.ones(n, dtype=bool)
    values = values.cast(pa.large_list(pa.large_string()))
    bad = np.asarray(values.is_null())
    flat = pc.list_flatten(values)
    if flat.null_count:
        parents = np.asarray(pc.list_parent_indices(values))
        bad |= np.bincount(parents[np.asarray(flat.is_null())], minlength=n) > 0
    return values, bad


def _string_column(values: pa.Array, n: int) -> tuple[Optional[pa.Array], np.ndarray]:
    if not _is_string_type(values.type) or pa.types.is_null(values.type):
        return None, np.ones(n, dtype=bool)
    values = values.cast(pa.large_string())
    return values, np.asarray(values.is_null())


def _any_per_row(flag_flat: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    if not flag_flat.any():
        return np.zeros(n, dtype=bool)
    return np.bincount(parents[flag_flat], minlength=n) > 0


def _exact_duplicates(
    query: pa.Array,
    positive: pa.Array,
    negatives: pa.Array,
    eligible: np.ndarray,
    query_codes: np.ndarray,
    negative_bytes: np.ndarray,
) -> np.ndarray:
    """Eligible rows that repeat an earlier eligible row's (query, positive, negatives) exactly.

    Hashing every text costs seconds at SPECTER scale. Exact duplicates share the query and the byte lengths of
    the positive and of the negatives, so rows are first grouped by (query code, those lengths); only rows whose
    group has several members (few) get their texts compared in Python. `negative_bytes` = per row, the byte
    length of its negatives plus their count.
    """
    duplicate = np.zeros(len(query), dtype=bool)
    rows = np.flatnonzero(eligible)
    if len(rows) < 2:
        return duplicate
    query_codes = query_codes[rows]
    positive_bytes = np.asarray(pc.binary_length(positive), dtype=np.int64)[rows]
    negatives_bytes = negative_bytes[rows]
    # One int64 per row: equal triplets give equal proxies (masking keeps that true), unequal ones rarely do.
    mask20 = (1 << 20) - 1
    proxy = ((query_codes & ((1 << 23) - 1)) << 40) | ((positive_bytes & mask20) << 20) | (negatives_bytes & mask20)
    _, inverse, counts = np.unique(proxy, return_inverse=True, return_counts=True)
    shared = counts[inverse] > 1
    if not shared.any():
        return duplicate
    candidates = pa.array(rows[shared])
    seen: set[tuple] = set()
    texts = zip(
        query.take(candidates).to_pylist(),
        positive.take(candidates).to_pylist(),
        negatives.take(candidates).to_pylist(),
        strict=True,
    )
    for row, (q, p, negs) in zip(rows[shared], texts, strict=True):
        key = (q, p, tuple(negs))
        if key in seen:
            duplicate[row] = True
        else:
            seen.add(key)
    return duplicate


def clean_triplets(
    data: Union[pa.Table, pd.DataFrame], max_text_chars: Optional[int] = DEFAULT_MAX_TEXT_CHARS
) -> CleanResult:
    """Normalise any accepted layout to (query, positive, negatives) and drop bad rows, counting each reason.

    Texts are stripped of surrounding whitespace. A row is counted under the first reason it fails, in the order
    of `DROP_REASONS`. Duplicates are exact (query, positive, negatives) repeats; the first occurrence is kept.
    """
    table = _as_table(data)
    n = table.num_rows
    layout = detect_layout(table.column_names)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    keep = np.ones(n, dtype=bool)

    def drop(reason: str, failing: np.ndarray) -> None:
        newly = failing & keep
        dropped[reason] += int(newly.sum())
        keep[newly] = False

    if layout == "set":
        sets, missing = _as_string_list(column(table, "set"), n)
        drop("missing_or_non_string", missing)
        if sets is None:
            return CleanResult(_empty_triplets(), dropped, n)
        lengths = np.asarray(pc.list_value_length(sets).fill_null(0))
        drop("wrong_arity", lengths < 3)
        sets = _keep_rows(sets, keep)
        query = pc.list_element(sets, 0)
        positive = pc.list_element(sets, 1)
        negatives = pc.list_slice(sets, 2)
    else:
        names = {key: next(a for a in aliases if a in table.column_names) for key, aliases in COLUMN_ALIASES.items()}
        query, bad_q = _string_column(column(table, names["query"]), n)
        positive, bad_p = _string_column(column(table, names["positive"]), n)
        negatives, bad_n = _as_string_list(column(table, names["negatives"]), n)
        drop("missing_or_non_string", bad_q | bad_p | bad_n)
        if query is None or positive is None or negatives is None:
            return CleanResult(_empty_triplets(), dropped, n)
        drop("wrong_arity", np.asarray(pc.list_value_length(negatives).fill_null(0)) < 1)
        query, positive, negatives = _keep_rows(query, keep), _keep_rows(positive, keep), _keep_rows(negatives, keep)

    # From here on every array covers only the rows still kept (m of them); `sub_keep` marks the survivors.
    m = int(keep.sum())
    query = _strip(query)
    positive = _strip(positive)
    neg_lengths = np.asarray(pc.list_value_length(negatives))
    neg_flat = _strip(pc.list_flatten(negatives))
    parents = np.repeat(np.arange(m), neg_lengths)

    sub_keep = np.ones(m, dtype=bool)

    def drop_sub(reason: str, failing: np.ndarray) -> None:
        newly = failing & sub_keep
        dropped[reason] += int(newly.sum())
        sub_keep[newly] = False

    q_len = np.asarray(pc.utf8_length(query))
    p_len = np.asarray(pc.utf8_length(positive))
    n_len = np.asarray(pc.utf8_length(neg_flat))
    drop_sub("empty_text", (q_len == 0) | (p_len == 0) | _any_per_row(n_len == 0, parents, m))
    if max_text_chars is not None:
        drop_sub(
            "too_long",
            (q_len > max_text_chars) | (p_len > max_text_chars) | _any_per_row(n_len > max_text_chars, parents, m),
        )
    drop_sub("query_equals_positive", np.asarray(pc.equal(query, positive)))

    negatives = rebuild_lists(neg_lengths, neg_flat)
    query_codes = np.asarray(pc.dictionary_encode(query).indices, dtype=np.int64)
    flat_bytes = np.concatenate([[0], np.cumsum(np.asarray(pc.binary_length(neg_flat), dtype=np.int64))])
    list_ends = np.cumsum(neg_lengths)
    negative_bytes = flat_bytes[list_ends] - flat_bytes[list_ends - neg_lengths] + neg_lengths
    drop_sub(
        "duplicate_triplet",
        _exact_duplicates(query, positive, negatives, sub_keep, query_codes, negative_bytes),
    )

    clean = pa.table(
        {
            "query": _keep_rows(query, sub_keep),
            "positive": _keep_rows(positive, sub_keep),
            "negatives": _keep_rows(negatives, sub_keep),
        }
    )
    kept_negatives = sub_keep[parents]

    def mean(lengths: np.ndarray) -> float:
        return round(float(lengths.mean()), 2) if len(lengths) else 0.0

    mean_chars = {
        "query": mean(q_len[sub_keep]),
        "pos_doc": mean(p_len[sub_keep]),
        "neg_doc": mean(n_len[kept_negatives]),
    }
    return CleanResult(clean, dropped, n, mean_chars, _compact_codes(query_codes[sub_keep]))


def _compact_codes(codes: np.ndarray) -> np.ndarray:
    """Renumber group codes 0..k-1 after rows were dropped (some groups may be gone); O(n), no sort."""
    if not len(codes):
        return codes
    present = np.bincount(codes) > 0
    return codes if present.all() else (np.cumsum(present) - 1)[codes]


def _empty_triplets() -> pa.Table:
    return pa.table(
        {
            "query": pa.array([], pa.large_string()),
            "positive": pa.array([], pa.large_string()),
            "negatives": pa.array([], pa.large_list(pa.large_string())),
        }
    )
