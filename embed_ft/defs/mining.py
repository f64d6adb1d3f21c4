"""Mining stage (group "data"): `mined_triplets` sits between the raw snapshot and the splits.

- BEIR source (`specter_raw` copied the split's corpus/queries/qrels): hard negatives are mined with
  `sentence_transformers.util.mine_hard_negatives` (`embed_ft.data.mining`); the rows (query, positive, negatives)
  go to `<storage root>/mined/<data version>.parquet`.
- SPECTER-layout source (rows that already carry their negatives): passed through unchanged — the value points at
  the raw snapshot and keeps its data version, so nothing is written and `specter_triplets` sees the same version
  as before this stage existed. No model is loaded.

Data version = hash(source data version, model fingerprint, settings, code version). The output file is named by
it, so a materialization whose source, model and settings are unchanged finds the file and reuses it without
loading a model (metadata `reused: true`); a change of settings re-mines without re-reading the source.
"""

from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue, asset

from ..data.errors import SourceError
from ..data.mining import (
    MiningSettings,
    default_mining_model,
    mine_beir_triplets,
    model_fingerprint,
)
from ..data.specter import read_parquet, write_parquet
from .common import markdown_table, stable_hash
from .experiment_spec import run_spec, used_spec_metadata
from .values import MinedTriplets, RawSnapshot

MINED_TRIPLETS_CODE_VERSION = "1"
KEEP_MINED_FILES = 3  # the latest few mined files stay, so switching back to recent settings costs nothing


def mined_data_version(source_version: str, model_print: str, settings: MiningSettings, split: str) -> str:
    return (
        "mined:" + stable_hash(source_version, model_print, settings.as_dict(), split, MINED_TRIPLETS_CODE_VERSION)[:32]
    )


def _storage(raw: RawSnapshot) -> Path:
    # The raw snapshot lives at <root>/raw/...: mined files go beside it.
    return Path(raw.path).parent.parent / "mined"


def _prune(folder: Path, keep: Path) -> None:
    others = sorted((p for p in folder.glob("*.parquet") if p != keep), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in others[KEEP_MINED_FILES - 1 :]:
        stale.unlink(missing_ok=True)


@asset(
    group_name="data",
    code_version=MINED_TRIPLETS_CODE_VERSION,
    kinds={"sentence_transformers", "parquet"},
    description="Training rows with hard negatives mined by sentence-transformers' mine_hard_negatives (BEIR "
    "sources); rows that already carry negatives pass through unchanged.",
)
def mined_triplets(context: AssetExecutionContext, specter_raw: RawSnapshot) -> MaterializeResult:
    used = run_spec(context)
    config = used.spec.mining
    if specter_raw.layout != "beir":
        value = MinedTriplets(
            path=specter_raw.path,
            source=specter_raw.source,
            layout=specter_raw.layout,
            rows=specter_raw.rows,
            data_version=specter_raw.data_version,
            source_data_version=specter_raw.data_version,
            mined=False,
        )
        metadata: dict[str, Any] = {
            "mined": False,
            "reused": False,
            "dagster/row_count": specter_raw.rows,
            "data_version": specter_raw.data_version,
            **used_spec_metadata(used, "mining"),
            "note": f"{specter_raw.layout!r} rows carry their negatives: passed through unchanged",
        }
        return MaterializeResult(value=value, data_version=DataVersion(specter_raw.data_version), metadata=metadata)

    settings = config.settings()
    model = config.model or default_mining_model()
    split = specter_raw.split or "train"  # BEIR snapshots record their split; "train" is what the source option means
    version = mined_data_version(specter_raw.data_version, model_fingerprint(model), settings, split)
    path = _storage(specter_raw) / f"{version.split(':', 1)[1]}.parquet"
    reused = path.is_file()
    stats: dict = {}
    try:
        if reused:
            context.log.info(f"source, model and settings unchanged (data version {version}): reusing {path}")
            table = read_parquet(path)
        else:
            context.log.info(
                f"mining {settings.num_negatives} negative(s) per row from {specter_raw.path} with {model}"
            )
            result = mine_beir_triplets(specter_raw.path, model, settings, split=split)
            table = pa.Table.from_pandas(result.frame, preserve_index=False)
            write_parquet(table, path)
            _prune(path.parent, path)
            stats = result.stats
    except SourceError as exc:
        raise Failure(description=f"mined_triplets: {exc}", allow_retries=False) from exc
    if table.num_rows == 0:
        raise Failure(
            description="mined_triplets: no row kept a negative; widen range_max or lower range_min/margins",
            allow_retries=False,
        )
    value = MinedTriplets(
        path=path,
        source=specter_raw.source,
        layout="columns",
        rows=table.num_rows,
        data_version=version,
        source_data_version=specter_raw.data_version,
        mined=True,
    )
    head = table.slice(0, 5).to_pylist()
    preview = markdown_table(
        ["query", "positive", "negatives"], [[r["query"][:80], r["positive"][:80], len(r["negatives"])] for r in head]
    )
    metadata = {
        "mined": True,
        "reused": reused,
        "dagster/row_count": table.num_rows,
        "data_version": version,
        "source_data_version": specter_raw.data_version,
        "model": model,
        **used_spec_metadata(used, "mining"),
        "path": MetadataValue.path(str(path)),
        "preview": MetadataValue.md(preview),
        **{f"stats/{k}": v for k, v in stats.items()},
    }
    return MaterializeResult(value=value, data_version=DataVersion(version), metadata=metadata)


__all__ = ["mined_data_version", "mined_triplets"]
