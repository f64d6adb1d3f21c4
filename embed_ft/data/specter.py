"""SPECTER-like sources: load one (Hub or local, through `datasets`), snapshot it, and turn it into NeMo JSONL splits.

Pure Python, no Dagster. The pipeline (`build_triplet_splits`: clean, split, write) stays in Arrow from the loaded
dataset to the written bytes, so 684,100 rows take a few seconds. The accepted layouts are described in
`cleaning.py`, the split policy in `splitting.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..formats.files import atomic_write
from .cleaning import DEFAULT_MAX_TEXT_CHARS, clean_triplets, detect_layout
from .errors import SourceError
from .nemo_jsonl_writer import write_nemo_jsonl
from .splitting import SPLITS, SplitOptions, split_paths, split_triplets

DEFAULT_HUB_DATASET = "embedding-data/SPECTER"
# File suffix -> `datasets` packaged builder.
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


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
        raise SourceError(f"local folder {str(path)!r} holds no data file ({', '.join(sorted(LOCAL_FORMATS))})")
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
        f'{{"ops": {{"specter_raw": {{"config": {{"{config_field}": "../shared/data/specter-sample"}}}}}}}}.'
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
        raise SourceError(
            f"{dataset_id!r} is neither an existing local path nor a valid Hub dataset id: {exc}"
        ) from exc
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
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
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
            table = _load_with_datasets(source, subset, revision=resolved_revision, split=split, cache_dir=cache_dir)
            _check_utf8(table)
        except ValueError as exc:
            raise SourceError(f"Hugging Face dataset {source!r}@{resolved_revision}: {exc}") from exc
        except _network_error_types() as exc:
            raise SourceError(
                f"the Hugging Face Hub cannot be reached to download {source!r} ({exc}). "
                + unreachable_hint(config_field)
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
        table=table,
        layout=layout,
        kind=kind,
        source=source,
        revision=resolved_revision,
        data_version=version,
        files=file_names,
    )


# --------------------------------------------------------------------------------------------------------- snapshot


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Atomically write an Arrow table as Parquet (the raw snapshot)."""
    return atomic_write(path, lambda handle: pq.write_table(table, handle, compression="zstd"))


def read_parquet(path: Path) -> pa.Table:
    """The raw snapshot; a `SourceError` saying what to do when it is missing or unreadable."""
    try:
        return pq.read_table(path)
    except FileNotFoundError as exc:
        raise SourceError(f"snapshot {str(path)!r} does not exist: materialize specter_raw first") from exc
    except Exception as exc:  # noqa: BLE001
        raise SourceError(f"snapshot {str(path)!r} is unreadable: {exc}") from exc


# --------------------------------------------------------------------------------------------------------- pipeline


@dataclass
class TripletSummary:
    """What `build_triplet_splits` wrote: rows per split (and requested), drops per reason, files, notes."""

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
