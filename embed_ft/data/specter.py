"""SPECTER-like triplets: load (Hub or local, through `datasets`), clean, split leak-free, write NeMo JSONL.

Pure Python, no Dagster. The pipeline stays in Arrow from the loaded dataset to the written bytes, so 684,100 rows
take a few seconds instead of a Python loop per row.

Accepted layouts (column names of the source):
- ``set``: a list ``[query, positive, negative, ...]`` (``embedding-data/SPECTER``); fewer than 3 items is a wrong arity;
- ``anchor``/``positive``/``negative`` (``sentence-transformers/specter``);
- ``query``/``positive``/``negatives`` (this package's normalised layout, e.g. triplets mined from a BEIR set),
  also ``pos_doc``/``neg_doc`` (the NeMo layout). A negatives column holds one string or a list of strings.

Split policy (``split_triplets``): rows are grouped by query text and whole groups are dealt out in a seeded random
order, first to the held-out test split, then validation, then training, so a query never lands in two splits.
``sample_size`` counts the training + validation rows; the test rows come on top of it. The last group a split takes
is cut to hit the requested size exactly; its cut-off rows are left out of every split (not sampled). The defaults
(seed 42, 68,400 sampled, 5% validation, 1,000 test) give the tutorial's 64,980 / 3,420 plus 1,000 test rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

DEFAULT_HUB_DATASET = "embedding-data/SPECTER"
DEFAULT_MAX_TEXT_CHARS = 20_000
SPLITS = ("training", "validation", "testing")
DROP_REASONS = (
    "missing_or_non_string",
    "wrong_arity",
    "empty_text",
    "too_long",
    "query_equals_positive",
    "duplicate_triplet",
)
# File suffix -> `datasets` packaged builder.
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Normalised column -> accepted source names, in order of preference.
COLUMN_ALIASES = {
    "query": ("query", "anchor"),
    "positive": ("positive", "pos_doc"),
    "negatives": ("negatives", "negative", "neg_doc"),
}
WRITE_CHUNK_ROWS = 131_072


def _ls(text: str) -> pa.Scalar:
    # Arrow's join kernels want literals of the arrays' type (large_string throughout this module).
    return pa.scalar(text, pa.large_string())


class SourceError(ValueError):
    """A source that cannot be loaded or yields no usable triplets; the message names source, file, column, counts."""


# --------------------------------------------------------------------------------------------------------- loading


@dataclass
class LoadedSource:
    """A source as read: the Arrow table in its own layout plus what identifies this exact content."""

    table: pa.Table
    layout: str  # "set" or "columns"
    kind: str  # "hub" or "local"
    source: str
    revision: Optional[str]  # Hub commit sha; None for local sources
    data_version: str  # Hub commit sha, or "sha256:<hex>" of the local files
    files: list[str] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def is_local_source(source: str) -> bool:
    """A source is local when the path exists or is written like a path (Hub ids look like `owner/name`)."""
    path = Path(source).expanduser()
    if path.exists():
        return True
    return source.startswith((".", "/", "~")) or path.suffix.lower() in LOCAL_FORMATS or "\\" in source


def local_data_files(source: str | Path) -> list[Path]:
    """The data files of a local source: the file itself, or every supported file under a folder (sorted)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"local source {str(source)!r} does not exist")
    if path.is_file():
        if path.suffix.lower() not in LOCAL_FORMATS:
            raise SourceError(
                f"local source {str(path)!r} has suffix {path.suffix!r}; supported: {', '.join(sorted(LOCAL_FORMATS))}"
            )
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_FORMATS)
    if not files:
        raise SourceError(
            f"local folder {str(path)!r} holds no data file ({', '.join(sorted(LOCAL_FORMATS))})"
        )
    return files


def content_hash(files: Iterable[Path], root: Optional[Path] = None) -> str:
    """sha256 over (relative path, size, bytes) of the files in sorted order: the data version of a local source."""
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        name = path.relative_to(root).as_posix() if root is not None else path.name
        digest.update(f"{name}\0{path.stat().st_size}\0".encode("utf-8"))
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def local_data_version(source: str | Path) -> str:
    """The data version `load_specter_source` gives a local source, without loading it (cheap for sensors)."""
    path = Path(source).expanduser()
    return content_hash(local_data_files(path), root=path if path.is_dir() else None)


def _network_error_types() -> tuple[type[BaseException], ...]:
    # huggingface_hub raises its HTTP client's transport errors (httpx, or the vendored httpx2) as they are;
    # offline mode raises ConnectionError. Not every OSError: a missing file is no network problem.
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        for name in ("TransportError", "ConnectionError", "Timeout"):
            error_type = getattr(module, name, None)
            if isinstance(error_type, type) and issubclass(error_type, BaseException):
                types.append(error_type)
    return tuple(types)


def unreachable_hint(config_field: str) -> str:
    return (
        f"To use a local copy instead, set `{config_field}` to a local file or folder (JSONL, JSON, Parquet or CSV "
        f"in the `set` or anchor/positive/negative layout), e.g. "
        f"{{\"ops\": {{\"specter_raw\": {{\"config\": {{\"{config_field}\": \"../shared/data/specter-sample\"}}}}}}}}."
    )


def resolve_hub_revision(dataset_id: str, revision: Optional[str] = None, *, config_field: str = "source") -> str:
    """The commit sha of `dataset_id` at `revision` (default branch when None): the Hub source's data version."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"Hugging Face dataset {dataset_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        info = HfApi().dataset_info(dataset_id, revision=revision)
    except GatedRepoError as exc:
        raise SourceError(f"{where} is gated: accept its terms on the Hub and set HF_TOKEN ({exc})") from exc
    except RevisionNotFoundError as exc:
        raise SourceError(f"{where}: the revision does not exist") from exc
    except RepositoryNotFoundError as exc:
        raise SourceError(
            f"{where}: unknown dataset id (or private without a token). " + unreachable_hint(config_field)
        ) from exc
    except HFValidationError as exc:
        raise SourceError(f"{dataset_id!r} is neither an existing local path nor a valid Hub dataset id: {exc}") from exc
    except HfHubHTTPError as exc:
        raise SourceError(f"{where}: the Hub answered with an error: {exc}") from exc
    except _network_error_types() as exc:
        raise SourceError(
            f"the Hugging Face Hub cannot be reached to resolve {where} ({type(exc).__name__}: {exc}). "
            + unreachable_hint(config_field)
        ) from exc
    if not info.sha:
        raise SourceError(f"{where}: the Hub returned no commit sha")
    return info.sha


def _load_with_datasets(builder_or_id: str, subset: Optional[str] = None, **kwargs) -> pa.Table:
    import datasets

    datasets.disable_progress_bars()
    dataset = datasets.load_dataset(builder_or_id, subset, **kwargs)
    return dataset.data.table


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return exc


def _check_utf8(table: pa.Table) -> None:
    """Raise pyarrow.ArrowInvalid when a string holds invalid UTF-8 (the JSON and CSV readers pass such bytes on)."""
    table.validate(full=True)


def _load_local(files: list[Path], cache_dir: Optional[str]) -> pa.Table:
    builders = {LOCAL_FORMATS[f.suffix.lower()] for f in files}
    if len(builders) > 1:
        raise SourceError(
            f"local folder mixes formats ({', '.join(sorted(builders))}) in {[str(f) for f in files]}; keep one format"
        )
    builder = builders.pop()

    def load(paths: list[Path]) -> pa.Table:
        table = _load_with_datasets(builder, data_files=[str(p) for p in paths], split="train", cache_dir=cache_dir)
        _check_utf8(table)
        return table

    try:
        return load(files)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes an error naming the file
        bad = files[0]
        if len(files) > 1:  # find the file that fails, to name it
            for candidate in files:
                try:
                    load([candidate])
                except Exception:  # noqa: BLE001
                    bad = candidate
                    break
        cause = _root_cause(exc)
        if "utf8" in str(cause).lower().replace("-", ""):
            raise SourceError(
                f"{builder.upper()} file {str(bad)!r} holds text that is not valid UTF-8 ({cause}); "
                "re-encode it as UTF-8"
            ) from exc
        raise SourceError(
            f"cannot read {builder.upper()} file {str(bad)!r}: it is unreadable or corrupt "
            f"({type(cause).__name__}: {cause})"
        ) from exc


def load_specter_source(
    source: str = DEFAULT_HUB_DATASET,
    revision: Optional[str] = None,
    split: str = "train",
    *,
    subset: Optional[str] = None,
    cache_dir: Optional[str] = None,
    config_field: str = "source",
) -> LoadedSource:
    """Load a SPECTER-like source through `datasets` and check its layout.

    `source` is a local file/folder or a Hub dataset id (`subset` = the dataset's configuration name, e.g.
    "triplet" for sentence-transformers/specter). Hub sources are pinned to the commit sha of `revision`
    (the data version); local sources are versioned by a content hash. Raises `SourceError` on an unknown id,
    an unreachable Hub, an unreadable file or missing columns.
    """
    if is_local_source(source):
        files = local_data_files(source)
        root = Path(source).expanduser()
        table = _load_local(files, cache_dir)
        version = content_hash(files, root=root if root.is_dir() else None)
        kind, resolved_revision = "local", None
        file_names = [str(f) for f in files]
    else:
        resolved_revision = resolve_hub_revision(source, revision, config_field=config_field)
        try:
            table = _load_with_datasets(
                source, subset, revision=resolved_revision, split=split, cache_dir=cache_dir
            )
            _check_utf8(table)
        except ValueError as exc:
            raise SourceError(f"Hugging Face dataset {source!r}@{resolved_revision}: {exc}") from exc
        except _network_error_types() as exc:
            raise SourceError(
                f"the Hugging Face Hub cannot be reached to download {source!r} ({exc}). " + unreachable_hint(config_field)
            ) from exc
        except Exception as exc:  # noqa: BLE001
            cause = _root_cause(exc)
            raise SourceError(
                f"cannot load Hugging Face dataset {source!r}@{resolved_revision} split {split!r}: "
                f"{type(cause).__name__}: {cause}"
            ) from exc
        version, kind, file_names = resolved_revision, "hub", []
    layout = detect_layout(table.column_names, source)
    return LoadedSource(
        table=table, layout=layout, kind=kind, source=source, revision=resolved_revision,
        data_version=version, files=file_names,
    )


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


# --------------------------------------------------------------------------------------------------------- cleaning


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

    def to_frame(self) -> pd.DataFrame:
        """pandas DataFrame with columns query, positive, negatives (list of str)."""
        frame = self.table.to_pandas()
        frame["negatives"] = frame["negatives"].map(list)
        return frame


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


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        # One chunk (the usual case, also for slices) is used as is: combine_chunks would copy it.
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _keep_rows(values: pa.Array, keep: np.ndarray) -> pa.Array:
    # Filtering copies every byte; most real sources lose no row at a given step.
    return values if keep.all() else values.filter(pa.array(keep))


def _offsets_and_bytes(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A large_string array's offsets (len + 1) and its whole UTF-8 data buffer, as numpy views (no copy)."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64, count=n + 1, offset=values.offset * 8)
    data_buffer = values.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def _strip(values: pa.Array) -> pa.Array:
    """utf8_trim_whitespace, skipped (no copy) when no string starts or ends with a space, control or non-ASCII byte."""
    values = values.cast(pa.large_string())
    offsets, data = _offsets_and_bytes(values)
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


def _rebuild_lists(lengths: np.ndarray, flat: pa.Array) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), flat)


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
        query.take(candidates).to_pylist(), positive.take(candidates).to_pylist(), negatives.take(candidates).to_pylist()
    )
    for row, (q, p, negs) in zip(rows[shared], texts):
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
        sets, missing = _as_string_list(_column(table, "set"), n)
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
        query, bad_q = _string_column(_column(table, names["query"]), n)
        positive, bad_p = _string_column(_column(table, names["positive"]), n)
        negatives, bad_n = _as_string_list(_column(table, names["negatives"]), n)
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

    negatives = _rebuild_lists(neg_lengths, neg_flat)
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

    mean_chars = {"query": mean(q_len[sub_keep]), "pos_doc": mean(p_len[sub_keep]), "neg_doc": mean(n_len[kept_negatives])}
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


# --------------------------------------------------------------------------------------------------------- splitting


@dataclass
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
        if self.validation_size <= 0 or (self.validation_size >= 1 and self.validation_size != int(self.validation_size)):
            raise ValueError(
                f"validation_size must be a fraction in (0, 1) or a whole number of rows >= 1, got {self.validation_size}"
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


# --------------------------------------------------------------------------------------------------------- writing


def atomic_write(path: Path, write: Callable[[object], None]) -> None:
    """Write through `write(binary_file)` to a temporary file beside `path`, then rename it into place.

    On any failure the temporary file is removed and a previous `path` is left untouched.
    """
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


_LINE_BREAK_ESCAPES = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


# Bytes that may need escaping: ASCII controls, quote, backslash, and the last bytes of U+0085 (C2 85) and
# U+2028/U+2029 (E2 80 A8/A9); the last three are confirmed by their preceding bytes.
_ESCAPE_CANDIDATE = np.zeros(256, dtype=bool)
_ESCAPE_CANDIDATE[[*range(0x20), 0x22, 0x5C, 0x85, 0xA8, 0xA9]] = True


def _rows_needing_escape(values: pa.Array) -> np.ndarray:
    """Which strings hold a character json.dumps escapes (quote, backslash, U+0000..U+001F) or one that
    str.splitlines() breaks on (U+0085, U+2028, U+2029). A table lookup over the UTF-8 bytes, not a regex per row."""
    n = len(values)
    offsets, data = _offsets_and_bytes(values)
    begin, end = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    positions = np.flatnonzero(_ESCAPE_CANDIDATE[data[begin:end]]) + begin
    if len(positions):
        byte = data[positions]
        before = data[np.maximum(positions - 1, 0)]
        before2 = data[np.maximum(positions - 2, 0)]
        line_break = ((byte == 0x85) & (before == 0xC2)) | ((byte >= 0xA8) & (before == 0x80) & (before2 == 0xE2))
        positions = positions[(byte < 0x80) | line_break]  # in valid UTF-8 these pairs/triples are exactly those characters
    needs = np.zeros(n, dtype=bool)
    needs[np.searchsorted(offsets, positions, side="right") - 1] = True
    return needs


def _json_string_bodies(values: pa.Array) -> pa.Array:
    """Each string as it appears between the quotes of `json.dumps(s, ensure_ascii=False)`.

    Strings without a quote, backslash or control character are already valid JSON; only the few others go
    through the standard `json` module, so the output is byte-identical to `json.dumps`, except that U+0085,
    U+2028 and U+2029 are written as \\u escapes: still the same JSON string, but no reader that splits lines
    like `str.splitlines()` can cut a row in two.
    """
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    needs = _rows_needing_escape(values)
    if not needs.any():
        return values
    mask = pa.array(needs)
    escaped = [
        json.dumps(s, ensure_ascii=False)[1:-1].translate(_LINE_BREAK_ESCAPES) for s in values.filter(mask).to_pylist()
    ]
    return pc.replace_with_mask(values, mask, pa.array(escaped, pa.large_string()))


def encode_nemo_jsonl(table: pa.Table) -> pa.Buffer:
    """NeMo JSONL bytes for a (query, positive, negatives) table; each line equals
    `json.dumps({"query": q, "pos_doc": p, "neg_doc": negatives}, ensure_ascii=False)` (see `_json_string_bodies`)."""
    query = _json_string_bodies(_column(table, "query").cast(pa.large_string()))
    positive = _json_string_bodies(_column(table, "positive").cast(pa.large_string()))
    negatives = _column(table, "negatives").cast(pa.large_list(pa.large_string()))
    lengths = np.asarray(pc.list_value_length(negatives))
    if len(lengths) and lengths.min() == 0:
        raise ValueError("every row needs at least one negative (neg_doc may not be empty)")
    # ["a", "b"]: the escaped texts joined by '", "' inside '["' ... '"]'.
    negatives_json = pc.binary_join(_rebuild_lists(lengths, _json_string_bodies(pc.list_flatten(negatives))), _ls('", "'))
    lines = pc.binary_join_element_wise(
        _ls('{"query": "'), query, _ls('", "pos_doc": "'), positive, _ls('", "neg_doc": ["'), negatives_json,
        _ls('"]}\n'), _ls(""),
    )
    # A non-null string array's value buffer is exactly the concatenated lines.
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    return lines.buffers()[2][int(offsets[0]) : int(offsets[-1])] if len(lines) else pa.py_buffer(b"")


def write_nemo_jsonl(table: pa.Table, path: Path, chunk_rows: int = WRITE_CHUNK_ROWS) -> Path:
    """Atomically write a (query, positive, negatives) table as NeMo JSONL, in chunks to bound memory."""

    def write(handle) -> None:
        for start in range(0, table.num_rows, chunk_rows):
            handle.write(encode_nemo_jsonl(table.slice(start, chunk_rows)))

    atomic_write(Path(path), write)
    return Path(path)


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Atomically write an Arrow table as Parquet (the raw snapshot)."""
    atomic_write(Path(path), lambda handle: pq.write_table(table, handle, compression="zstd"))
    return Path(path)


def read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError as exc:
        raise SourceError(f"snapshot {str(path)!r} does not exist: materialize specter_raw first") from exc
    except Exception as exc:  # noqa: BLE001
        raise SourceError(f"snapshot {str(path)!r} is unreadable: {exc}") from exc


def split_paths(root: Path) -> dict[str, Path]:
    root = Path(root)
    return {name: root / name / f"{name}.jsonl" for name in SPLITS}


# --------------------------------------------------------------------------------------------------------- pipeline


@dataclass
class TripletSummary:
    rows: dict[str, int]
    requested: dict[str, int]
    dropped: dict[str, int]
    input_rows: int
    clean_rows: int
    distinct_queries: int
    mean_chars: dict[str, float]  # of the clean rows the splits are drawn from: query, pos_doc, neg_doc (per text)
    paths: dict[str, str]
    data_version: str
    notes: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def build_triplet_splits(
    raw: Union[pa.Table, pd.DataFrame],
    storage_root: Path,
    *,
    options: SplitOptions = SplitOptions(),
    max_text_chars: Optional[int] = DEFAULT_MAX_TEXT_CHARS,
    data_version: str = "",
    source: str = "source",
) -> TripletSummary:
    """Clean, split and write training/validation/testing JSONL under `storage_root`; return the summary."""
    options.validate()
    cleaned = clean_triplets(raw, max_text_chars=max_text_chars)
    if cleaned.num_rows == 0:
        reasons = ", ".join(f"{k}={v}" for k, v in cleaned.dropped.items() if v) or "the source is empty"
        raise SourceError(f"{source!r}: zero valid rows out of {cleaned.input_rows} ({reasons})")
    split = split_triplets(cleaned.table.column("query"), options, query_codes=cleaned.query_codes)
    paths = split_paths(storage_root)
    rows: dict[str, int] = {}
    for name in SPLITS:
        part = cleaned.table.take(pa.array(split.indices[name]))
        write_nemo_jsonl(part, paths[name])
        rows[name] = part.num_rows
    return TripletSummary(
        rows=rows,
        requested={name: split.requested[name] for name in SPLITS},
        dropped=cleaned.dropped,
        input_rows=cleaned.input_rows,
        clean_rows=cleaned.num_rows,
        distinct_queries=split.distinct_queries,
        mean_chars=cleaned.mean_chars,
        paths={name: str(p) for name, p in paths.items()},
        data_version=data_version,
        notes=split.notes,
    )


# --------------------------------------------------------------------------------------------------------- checks


def read_nemo_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def schema_problems(path: Path, limit: int = 5) -> tuple[int, list[str]]:
    """(rows, problems): every line must be {"query": str, "pos_doc": str, "neg_doc": [str, ...]} in that order,
    with non-empty texts. Problems name the file and line; at most `limit` are listed."""
    problems: list[str] = []
    rows = 0
    bad = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            rows += 1
            problem = _line_problem(line)
            if problem:
                bad += 1
                if len(problems) < limit:
                    problems.append(f"{path}:{number}: {problem}")
    if bad > limit:
        problems.append(f"... {bad - limit} more bad lines in {path}")
    return rows, problems


def _line_problem(line: str) -> Optional[str]:
    try:
        row = json.loads(line)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(row, dict) or list(row) != ["query", "pos_doc", "neg_doc"]:
        return f"keys must be exactly query, pos_doc, neg_doc in that order, got {list(row) if isinstance(row, dict) else type(row).__name__}"
    if not isinstance(row["query"], str) or not row["query"].strip():
        return "query is not a non-empty string"
    if not isinstance(row["pos_doc"], str) or not row["pos_doc"].strip():
        return "pos_doc is not a non-empty string"
    negatives = row["neg_doc"]
    if not isinstance(negatives, list) or not negatives:
        return "neg_doc is not a non-empty list"
    if not all(isinstance(x, str) and x.strip() for x in negatives):
        return "neg_doc holds a value that is not a non-empty string"
    return None


def split_queries(path: Path) -> set[str]:
    """The distinct query texts of a NeMo JSONL split."""
    with open(path, encoding="utf-8") as handle:
        return {json.loads(line)["query"] for line in handle if line.strip()}


def crossing_queries(paths: dict[str, Path]) -> dict[str, int]:
    """For each pair of splits, how many query texts occur in both (all zeros when leak-free)."""
    queries = {name: split_queries(Path(p)) for name, p in paths.items()}
    names = list(queries)
    return {
        f"{a}&{b}": len(queries[a] & queries[b]) for i, a in enumerate(names) for b in names[i + 1 :]
    }
