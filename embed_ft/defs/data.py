"""Data stage (group "data"): snapshot the SPECTER-like source, then clean, split and write NeMo JSONL.

- `specter_raw`: the source as a local Parquet snapshot (a BEIR source: a copy of the split's files); DataVersion =
  Hub commit sha or local content hash. It only snapshots: no model is loaded here.
- `mined_triplets` (`mining.py`): hard negatives mined for a BEIR source; other sources pass through unchanged.
- `specter_triplets`: training/validation/testing JSONL under `<storage root>/triplets/`; its value (a
  `values.TripletSplits`) is what the training and evaluation stages consume.
- Blocking checks on `specter_triplets`: schema, no empty split, no query crossing splits.
- `data_refresh.py` holds the job that rebuilds these two assets and the sensor that launches it when the source
  changes.

Storage root: `storage_root` in either config, else env `EMBED_FT_DATA_ROOT`, else `./.embed_ft/data`.
"""

import os
from pathlib import Path
from typing import Optional

import pyarrow as pa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
    asset_check,
)
from pydantic import Field, field_validator

from ..data.beir import beir_files_of, snapshot_beir_split
from ..data.cleaning import DEFAULT_MAX_TEXT_CHARS
from ..data.errors import SourceError
from ..data.public_beir import FILLABLE, download_line, fill_beir_folder, fill_state
from ..data.specter import (
    DEFAULT_HUB_DATASET,
    build_triplet_splits,
    content_hash,
    is_local_source,
    load_specter_source,
    local_data_version,
    read_parquet,
    resolve_hub_revision,
    write_parquet,
)
from ..data.split_checks import crossing_queries, schema_problems
from ..data.splitting import SplitOptions
from ..formats.beir import document_text, is_beir_folder
from .common import CPU_TAGS, OWNERS, markdown_table, stable_hash
from .mining import mined_triplets
from .settings import resolve_settings, settings_metadata
from .values import MinedTriplets, RawSnapshot, TripletSplits

DATA_ROOT_ENV = "EMBED_FT_DATA_ROOT"
DEFAULT_DATA_ROOT = "./.embed_ft/data"
SPECTER_RAW_CODE_VERSION = "1"
SPECTER_TRIPLETS_CODE_VERSION = "1"
SOURCE_KINDS = ("auto", "hub", "local", "beir")
SOURCE_ASSET = "specter_source"
# Set by specter_source_sensor: the Hub sha it saw, so the run builds exactly that revision without the pin
# becoming the stored `revision` setting (which would freeze every later check of the source).
PINNED_REVISION_TAG = "embed_ft/source_revision"
TRIPLETS_SCHEMA = TableSchema(
    columns=[
        TableColumn("query", "string", description="the citing paper's title (the query)"),
        TableColumn("pos_doc", "string", description="a cited paper (relevant)"),
        TableColumn("neg_doc", "list<string>", description="papers not cited (hard negatives)"),
    ]
)


def data_root(override: Optional[str] = None) -> Path:
    # Absolute, so the paths handed downstream stay valid whatever the consumer's working directory.
    return Path(override or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).expanduser().resolve()


class SpecterSourceConfig(Config):
    source: str = Field(
        default=DEFAULT_HUB_DATASET,
        description="Hugging Face dataset id, or a local file/folder (JSONL, JSON, Parquet, CSV) in the `set` or "
        "anchor/positive/negative layout, or a local BEIR folder (corpus.jsonl, queries.jsonl, qrels/).",
    )
    revision: Optional[str] = Field(default=None, description="Hub revision (branch, tag or sha); None = default branch.")
    split: str = Field(default="train", description="Dataset split; for a BEIR folder the qrels split to snapshot.")
    subset: Optional[str] = Field(
        default=None, description="Hub dataset configuration, e.g. 'triplet' for sentence-transformers/specter."
    )
    source_kind: str = Field(
        default="auto",
        description="auto (an existing path is local, a BEIR-layout folder is beir, anything else a Hub id), "
        "hub, local or beir.",
    )
    storage_root: Optional[str] = Field(default=None, description=f"Overrides ${DATA_ROOT_ENV} (default {DEFAULT_DATA_ROOT}).")

    @field_validator("source_kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in SOURCE_KINDS:
            raise ValueError(f"source_kind must be one of {', '.join(SOURCE_KINDS)}; got {value!r}")
        return value


class TripletSplitConfig(Config):
    sample_size: Optional[int] = Field(
        default=68_400, description="Training + validation rows (test rows come on top); None = all rows."
    )
    sample_fraction: Optional[float] = Field(default=None, description="Instead of sample_size: fraction of clean rows.")
    validation_size: float = Field(default=0.05, description="< 1: fraction of the sample; >= 1: number of rows.")
    test_size: int = Field(default=1_000, description="Held-out test rows, taken before the train/validation split.")
    seed: int = 42
    max_text_chars: int = Field(default=DEFAULT_MAX_TEXT_CHARS, description="Longer texts drop the row (too_long).")
    storage_root: Optional[str] = Field(default=None, description=f"Overrides ${DATA_ROOT_ENV} (default {DEFAULT_DATA_ROOT}).")

    def split_options(self) -> SplitOptions:
        return SplitOptions(
            sample_size=self.sample_size,
            sample_fraction=self.sample_fraction,
            validation_size=self.validation_size,
            test_size=self.test_size,
            seed=self.seed,
        )


# ------------------------------------------------------------------------------------------------ source identity


def resolve_source_kind(config: SpecterSourceConfig) -> str:
    """hub, local or beir; an explicit kind must fit the source."""
    path = Path(config.source).expanduser()
    kind = config.source_kind
    if kind == "auto":
        if not is_local_source(config.source):
            return "hub"
        return "beir" if path.is_dir() and is_beir_folder(path) else "local"
    if kind == "beir" and not is_beir_folder(path):
        raise SourceError(f"source {config.source!r} is not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    if kind == "local" and not path.exists():
        raise SourceError(f"local source {config.source!r} does not exist")
    return kind


def _beir_version(config: SpecterSourceConfig) -> str:
    # The split's files only: how negatives are mined is `mined_triplets`' business (its own data version).
    folder = Path(config.source).expanduser()
    return "beir:" + stable_hash(content_hash(beir_files_of(folder, config.split), root=folder), config.split)[:32]


def source_version(config: SpecterSourceConfig) -> tuple[str, str, Optional[str]]:
    """(kind, data version, Hub revision sha) of the configured source without loading it; `SourceError` if unknown."""
    kind = resolve_source_kind(config)
    if kind == "hub":
        sha = resolve_hub_revision(config.source, config.revision)
        return kind, sha, sha
    if kind == "beir":
        return kind, _beir_version(config), None
    return kind, local_data_version(config.source), None


# ------------------------------------------------------------------------------------------------ assets


def _preview(table: pa.Table, rows: int = 5, width: int = 80) -> str:
    """The first rows as a markdown table; a `set` list is shown as query / positive / negatives columns."""
    head = table.slice(0, rows).to_pylist()

    def cell(value) -> str:
        text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    if "set" in table.column_names:
        header = ["set[0] query", "set[1] positive", "set[2:] negatives"]
        body = [[(r["set"] or [])[0:1], (r["set"] or [])[1:2], (r["set"] or [])[2:]] for r in head]
        return markdown_table(header, [[cell(v) for v in row] for row in body])
    columns = table.column_names
    return markdown_table(columns, [[cell(row[c]) for c in columns] for row in head])


def arrow_column_schema(table: pa.Table) -> TableSchema:
    """The snapshot's columns as Dagster shows them (`dagster/column_schema`)."""
    return TableSchema(columns=[TableColumn(f.name, str(f.type)) for f in table.schema])


@asset(
    deps=[SOURCE_ASSET, "preflight"],  # defs/preflight.py: checked before anything starts
    group_name="data",
    code_version=SPECTER_RAW_CODE_VERSION,
    kinds={"huggingface", "parquet"},
    owners=OWNERS,
    tags=CPU_TAGS,
    description="The SPECTER-like source as a local Parquet snapshot (Hub dataset pinned to a commit, a local "
    "file/folder), or a copy of a BEIR split's files (mined_triplets mines its negatives).",
)
def specter_raw(context: AssetExecutionContext, config: SpecterSourceConfig) -> MaterializeResult:
    config, chosen = resolve_settings(context, config)
    pinned = context.run.tags.get(PINNED_REVISION_TAG)
    load_revision = pinned or config.revision
    root = data_root(config.storage_root)
    try:
        if config.source_kind in ("auto", "beir") and fill_state(config.source) in FILLABLE:
            context.log.info(f"{config.source} is not here: {download_line(config.source)}")
            fill_beir_folder(config.source)  # from the Hub cache, or downloaded once into it
        kind = resolve_source_kind(config)
        if kind == "beir":
            version = _beir_version(config)
            beir = snapshot_beir_split(config.source, root / "raw" / "specter_raw_beir", split=config.split)
            pairs = [(beir.queries[q], document_text(*beir.corpus[d])) for q, docs in beir.qrels.items()
                     for d, score in docs.items() if score > 0]
            table = pa.table({"query": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
            revision, layout, files = None, "beir", 3
        else:
            loaded = load_specter_source(
                config.source, load_revision, config.split, subset=config.subset, cache_dir=str(root / "hf_cache")
            )
            table, version, revision, layout, files = (
                loaded.table, loaded.data_version, loaded.revision, loaded.layout, len(loaded.files)
            )
    except SourceError as exc:
        raise Failure(description=f"specter_raw: {exc}", allow_retries=False) from exc
    # A BEIR snapshot is the copied folder (`table` only previews its judged pairs); other sources one Parquet file.
    path = root / "raw" / "specter_raw_beir" if kind == "beir" else write_parquet(table, root / "raw" / "specter_raw.parquet")
    value = RawSnapshot(
        path=path, source=config.source, kind=kind, revision=revision, data_version=version, layout=layout,
        rows=table.num_rows, split=config.split if kind == "beir" else None,
    )
    metadata = {
        "source": config.source,
        "source_kind": kind,
        "revision": revision or ("(local content hash)" if kind != "hub" else ""),
        "data_version": version,
        "layout": layout,
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": arrow_column_schema(table),
        **settings_metadata(chosen),
        "snapshot_path": MetadataValue.path(str(path)),
        "preview": MetadataValue.md(_preview(table)),
    }
    if kind == "local":
        metadata["files"] = files
    return MaterializeResult(value=value, data_version=DataVersion(version), metadata=metadata)


@asset(
    group_name="data",
    code_version=SPECTER_TRIPLETS_CODE_VERSION,
    kinds={"json"},
    owners=OWNERS,
    tags=CPU_TAGS,
    description="Cleaned, leak-free training/validation/testing splits in the NeMo embedding JSONL format.",
)
def specter_triplets(
    context: AssetExecutionContext, config: TripletSplitConfig, mined_triplets: MinedTriplets
) -> MaterializeResult:
    config, chosen = resolve_settings(context, config)
    root = data_root(config.storage_root) / "triplets"
    try:
        options = config.split_options()
        options.validate()
        table = read_parquet(mined_triplets.path)
        summary = build_triplet_splits(
            table,
            root,
            options=options,
            max_text_chars=config.max_text_chars,
            data_version=mined_triplets.data_version,
            source=mined_triplets.source,
        )
    except (SourceError, ValueError) as exc:
        raise Failure(description=f"specter_triplets: {exc}", allow_retries=False) from exc
    for note in summary.notes:
        context.log.warning(note)
    version = stable_hash(
        mined_triplets.data_version, options.__dict__, config.max_text_chars, SPECTER_TRIPLETS_CODE_VERSION
    )[:32]
    value = TripletSplits(
        root=root,
        training=Path(summary.paths["training"]),
        validation=Path(summary.paths["validation"]),
        testing=Path(summary.paths["testing"]),
        data_version=version,
        source_data_version=mined_triplets.data_version,
        rows=dict(summary.rows),
    )
    metadata = {
        "dagster/row_count": sum(summary.rows.values()),
        "dagster/column_schema": TRIPLETS_SCHEMA,
        **settings_metadata(chosen),
        **{f"rows/{name}": n for name, n in summary.rows.items()},
        **{f"requested/{name}": n for name, n in summary.requested.items()},
        **{f"dropped/{reason}": n for reason, n in summary.dropped.items()},
        **{f"mean_chars/{name}": float(v) for name, v in summary.mean_chars.items()},
        **{f"path/{name}": MetadataValue.path(p) for name, p in summary.paths.items()},
        "input_rows": summary.input_rows,
        "clean_rows": summary.clean_rows,
        "distinct_queries": summary.distinct_queries,
        "data_version": version,
        "source_data_version": mined_triplets.data_version,
        "notes": MetadataValue.md("\n".join(f"- {n}" for n in summary.notes) or "none"),
    }
    return MaterializeResult(value=value, data_version=DataVersion(version), metadata=metadata)


# ------------------------------------------------------------------------------------------------ checks


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


@asset_check(asset=specter_triplets, blocking=True, description="Every line is {query: str, pos_doc: str, neg_doc: [str, ...]}.")
def specter_triplets_schema(context: AssetCheckExecutionContext, specter_triplets: TripletSplits) -> AssetCheckResult:
    problems: list[str] = []
    rows: dict[str, int] = {}
    for name, path in specter_triplets.paths().items():
        if not path.is_file():
            problems.append(f"{name}: {path} does not exist")
            continue
        rows[name], found = schema_problems(path)
        problems += found
    return AssetCheckResult(
        passed=not problems,
        metadata={**{f"rows/{k}": v for k, v in rows.items()}, "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
        description="; ".join(problems[:3]) if problems else None,
    )


@asset_check(asset=specter_triplets, blocking=True, description="Training, validation and testing each hold rows.")
def specter_triplets_non_empty(context: AssetCheckExecutionContext, specter_triplets: TripletSplits) -> AssetCheckResult:
    rows = {name: _count_lines(path) for name, path in specter_triplets.paths().items()}
    empty = [name for name, n in rows.items() if n == 0]
    return AssetCheckResult(
        passed=not empty,
        metadata={f"rows/{k}": v for k, v in rows.items()},
        description=f"empty split(s): {', '.join(empty)}" if empty else None,
    )


@asset_check(asset=specter_triplets, blocking=True, description="No query text occurs in two splits.")
def specter_triplets_no_query_leak(context: AssetCheckExecutionContext, specter_triplets: TripletSplits) -> AssetCheckResult:
    crossing = crossing_queries(specter_triplets.paths())
    leaks = {pair: n for pair, n in crossing.items() if n}
    return AssetCheckResult(
        passed=not leaks,
        metadata={f"shared_queries/{pair}": n for pair, n in crossing.items()},
        description=", ".join(f"{n} queries shared by {pair}" for pair, n in leaks.items()) or None,
    )


data_assets = [specter_raw, mined_triplets, specter_triplets]
data_checks = [specter_triplets_schema, specter_triplets_non_empty, specter_triplets_no_query_leak]

__all__ = [
    "PINNED_REVISION_TAG",
    "SOURCE_ASSET",
    "SpecterSourceConfig",
    "TripletSplitConfig",
    "data_assets",
    "data_checks",
    "source_version",
    "specter_raw",
    "specter_triplets",
]
