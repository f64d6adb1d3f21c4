"""Data stage (group "data"): snapshot the SPECTER-like source, then clean, split and write NeMo JSONL.

- `specter_raw`: the source as a local Parquet snapshot (a BEIR source: a copy of the split's files); DataVersion =
  Hub commit sha or local content hash. It only snapshots: no model is loaded here.
- `mined_triplets` (`mining.py`): hard negatives mined for a BEIR source; other sources pass through unchanged.
- `specter_triplets`: training/validation/testing JSONL under `<storage root>/triplets/`; its value (a
  `values.TripletSplits`) is what the training and evaluation stages consume.
- Blocking checks on `specter_triplets`: schema, no empty split, no query crossing splits.
- `data_refresh.py` holds the job that rebuilds these two assets and the sensor that launches it when the source
  changes.

Settings: the `data` and `split` sections of the run's experiment spec (`experiment_spec.py`). Storage root: env
`EMBED_FT_DATA_ROOT`, else `./.embed_ft/data`.
"""

from pathlib import Path
from typing import Optional

import pyarrow as pa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
    asset_check,
)

from ..data.beir import beir_files_of, snapshot_beir_split
from ..data.errors import SourceError
from ..data.public_beir import FILLABLE, download_line, fill_beir_folder, fill_state
from ..data.specter import (
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
from ..formats.beir import document_text, is_beir_folder
from ..spec.experiment import DataSpec
from ..state_layout import DATA_ROOT_ENV, fallback
from .common import CPU_TAGS, OWNERS, markdown_table, stable_hash
from .experiment_spec import run_spec, used_spec_metadata
from .mining import mined_triplets
from .values import MinedTriplets, RawSnapshot, TripletSplits

SPECTER_RAW_CODE_VERSION = "1"
SPECTER_TRIPLETS_CODE_VERSION = "1"
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


def data_root() -> Path:
    # Absolute, so the paths handed downstream stay valid whatever the consumer's working directory.
    return fallback(DATA_ROOT_ENV)


# ------------------------------------------------------------------------------------------------ source identity


def resolve_source_kind(config: DataSpec) -> str:
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


def _beir_version(config: DataSpec) -> str:
    # The split's files only: how negatives are mined is `mined_triplets`' business (its own data version).
    folder = Path(config.source).expanduser()
    return "beir:" + stable_hash(content_hash(beir_files_of(folder, config.split), root=folder), config.split)[:32]


def source_version(config: DataSpec) -> tuple[str, str, Optional[str]]:
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
    deps=[SOURCE_ASSET, "preflight"],  # defs/preflight.py: checked before anything starts (after the spec)
    group_name="data",
    code_version=SPECTER_RAW_CODE_VERSION,
    kinds={"huggingface", "parquet"},
    owners=OWNERS,
    tags=CPU_TAGS,
    description="The SPECTER-like source as a local Parquet snapshot (Hub dataset pinned to a commit, a local "
    "file/folder), or a copy of a BEIR split's files (mined_triplets mines its negatives).",
)
def specter_raw(context: AssetExecutionContext) -> MaterializeResult:
    used = run_spec(context)
    pinned = context.run.tags.get(PINNED_REVISION_TAG)
    load_revision = pinned or used.spec.data.revision
    root = data_root()
    try:
        config = used.spec.data.resolved()
        if config.source_kind in ("auto", "beir") and fill_state(config.source) in FILLABLE:
            context.log.info(f"{config.source} is not here: {download_line(config.source)}")
            fill_beir_folder(config.source)  # from the Hub cache, or downloaded once into it
        kind = resolve_source_kind(config)
        if kind == "beir":
            version = _beir_version(config)
            beir = snapshot_beir_split(config.source, root / "raw" / "specter_raw_beir", split=config.split)
            pairs = [
                (beir.queries[q], document_text(*beir.corpus[d]))
                for q, docs in beir.qrels.items()
                for d, score in docs.items()
                if score > 0
            ]
            table = pa.table({"query": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
            revision, layout, files = None, "beir", 3
        else:
            loaded = load_specter_source(
                config.source, load_revision, config.split, subset=config.subset, cache_dir=str(root / "hf_cache")
            )
            table, version, revision, layout, files = (
                loaded.table,
                loaded.data_version,
                loaded.revision,
                loaded.layout,
                len(loaded.files),
            )
    except (SourceError, ValueError) as exc:
        raise Failure(description=f"specter_raw: {exc}", allow_retries=False) from exc
    # A BEIR snapshot is the copied folder (`table` only previews its judged pairs); other sources one Parquet file.
    path = (
        root / "raw" / "specter_raw_beir"
        if kind == "beir"
        else write_parquet(table, root / "raw" / "specter_raw.parquet")
    )
    value = RawSnapshot(
        path=path,
        source=config.source,
        kind=kind,
        revision=revision,
        data_version=version,
        layout=layout,
        rows=table.num_rows,
        split=config.split if kind == "beir" else None,
    )
    metadata = {
        "source": config.source,
        "source_kind": kind,
        "revision": revision or ("(local content hash)" if kind != "hub" else ""),
        "data_version": version,
        "layout": layout,
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": arrow_column_schema(table),
        **used_spec_metadata(used, "data"),
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
def specter_triplets(context: AssetExecutionContext, mined_triplets: MinedTriplets) -> MaterializeResult:
    used = run_spec(context)
    config = used.spec.split
    root = data_root() / "triplets"
    try:
        options = config.options()
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
        **used_spec_metadata(used, "split"),
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


@asset_check(
    asset=specter_triplets, blocking=True, description="Every line is {query: str, pos_doc: str, neg_doc: [str, ...]}."
)
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
        metadata={
            **{f"rows/{k}": v for k, v in rows.items()},
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        },
        description="; ".join(problems[:3]) if problems else None,
    )


@asset_check(asset=specter_triplets, blocking=True, description="Training, validation and testing each hold rows.")
def specter_triplets_non_empty(
    context: AssetCheckExecutionContext, specter_triplets: TripletSplits
) -> AssetCheckResult:
    rows = {name: _count_lines(path) for name, path in specter_triplets.paths().items()}
    empty = [name for name, n in rows.items() if n == 0]
    return AssetCheckResult(
        passed=not empty,
        metadata={f"rows/{k}": v for k, v in rows.items()},
        description=f"empty split(s): {', '.join(empty)}" if empty else None,
    )


@asset_check(asset=specter_triplets, blocking=True, description="No query text occurs in two splits.")
def specter_triplets_no_query_leak(
    context: AssetCheckExecutionContext, specter_triplets: TripletSplits
) -> AssetCheckResult:
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
    "data_assets",
    "data_checks",
    "source_version",
    "specter_raw",
    "specter_triplets",
]
