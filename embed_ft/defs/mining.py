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
from typing import Any, Optional

import pyarrow as pa
from dagster import AssetExecutionContext, Config, DataVersion, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from ..data.errors import SourceError
from ..data.mining import (
    DEFAULT_FAISS_MIN_CORPUS,
    MiningSettings,
    default_mining_model,
    mine_beir_triplets,
    model_fingerprint,
)
from ..data.specter import read_parquet, write_parquet
from .common import markdown_table, stable_hash
from .values import MinedTriplets, RawSnapshot

MINED_TRIPLETS_CODE_VERSION = "1"
KEEP_MINED_FILES = 3  # the latest few mined files stay, so switching back to recent settings costs nothing


class MiningConfig(Config):
    """Hard-negative mining settings (BEIR sources; ignored for sources whose rows carry negatives)."""

    model: Optional[str] = Field(default=None, description="SentenceTransformer folder or id; None = packaged all-MiniLM-L6-v2.")
    range_min: int = Field(default=MiningSettings.range_min, ge=0, description="Skip the model's top range_min candidates (likely unjudged positives).")
    range_max: Optional[int] = Field(default=MiningSettings.range_max, description="Sample from ranks [range_min, range_max); None = derived by the library.")
    relative_margin: Optional[float] = Field(default=MiningSettings.relative_margin, description="Drop candidates scoring above positive - |positive| x margin.")
    absolute_margin: Optional[float] = Field(default=None, description="Drop candidates scoring above positive - margin.")
    max_score: Optional[float] = Field(default=None, description="Drop candidates scoring above this.")
    sampling_strategy: str = Field(default="random", description="random (sample within the window) or top.")
    num_negatives: int = Field(default=MiningSettings.num_negatives, ge=1, description="Negatives per (query, positive) row.")
    batch_size: int = Field(default=64, ge=1, description="Encoding batch size.")
    max_seq_length: Optional[int] = Field(default=None, description="Truncate texts when mining; None = the model's.")
    use_faiss: Optional[bool] = Field(default=None, description="None = auto: faiss (if installed) from faiss_min_corpus documents.")
    faiss_min_corpus: int = Field(default=DEFAULT_FAISS_MIN_CORPUS, ge=1)
    seed: int = Field(default=42, description="Seed of the random sampling.")
    storage_root: Optional[str] = Field(default=None, description="None = the raw snapshot's storage root.")

    def settings(self) -> MiningSettings:
        values = self.model_dump(exclude={"model", "storage_root"})
        settings = MiningSettings(**values)
        problems = settings.problems()
        if problems:
            raise Failure(description="mined_triplets: " + "; ".join(problems), allow_retries=False)
        return settings


def mined_data_version(source_version: str, model_print: str, settings: MiningSettings, split: str) -> str:
    return "mined:" + stable_hash(source_version, model_print, settings.as_dict(), split, MINED_TRIPLETS_CODE_VERSION)[:32]


def _storage(config: MiningConfig, raw: RawSnapshot) -> Path:
    # The raw snapshot lives at <root>/raw/...: mined files go beside it unless told otherwise.
    root = Path(config.storage_root).expanduser().resolve() if config.storage_root else Path(raw.path).parent.parent
    return root / "mined"


def _prune(folder: Path, keep: Path) -> None:
    others = sorted((p for p in folder.glob("*.parquet") if p != keep), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in others[KEEP_MINED_FILES - 1:]:
        stale.unlink(missing_ok=True)


@asset(
    group_name="data",
    code_version=MINED_TRIPLETS_CODE_VERSION,
    kinds={"sentence_transformers", "parquet"},
    description="Training rows with hard negatives mined by sentence-transformers' mine_hard_negatives (BEIR "
    "sources); rows that already carry negatives pass through unchanged.",
)
def mined_triplets(context: AssetExecutionContext, config: MiningConfig, specter_raw: RawSnapshot) -> MaterializeResult:
    if specter_raw.layout != "beir":
        value = MinedTriplets(
            path=specter_raw.path, source=specter_raw.source, layout=specter_raw.layout, rows=specter_raw.rows,
            data_version=specter_raw.data_version, source_data_version=specter_raw.data_version, mined=False,
        )
        metadata: dict[str, Any] = {"mined": False, "reused": False, "dagster/row_count": specter_raw.rows,
                    "data_version": specter_raw.data_version,
                    "note": f"{specter_raw.layout!r} rows carry their negatives: passed through unchanged"}
        return MaterializeResult(value=value, data_version=DataVersion(specter_raw.data_version), metadata=metadata)

    settings = config.settings()
    model = config.model or default_mining_model()
    split = specter_raw.split or "train"  # BEIR snapshots record their split; "train" is what the source option means
    version = mined_data_version(specter_raw.data_version, model_fingerprint(model), settings, split)
    path = _storage(config, specter_raw) / f"{version.split(':', 1)[1]}.parquet"
    reused = path.is_file()
    stats: dict = {}
    try:
        if reused:
            context.log.info(f"source, model and settings unchanged (data version {version}): reusing {path}")
            table = read_parquet(path)
        else:
            context.log.info(f"mining {settings.num_negatives} negative(s) per row from {specter_raw.path} with {model}")
            result = mine_beir_triplets(specter_raw.path, model, settings, split=split)
            table = pa.Table.from_pandas(result.frame, preserve_index=False)
            write_parquet(table, path)
            _prune(path.parent, path)
            stats = result.stats
    except SourceError as exc:
        raise Failure(description=f"mined_triplets: {exc}", allow_retries=False) from exc
    if table.num_rows == 0:
        raise Failure(description="mined_triplets: no row kept a negative; widen range_max or lower range_min/margins",
                      allow_retries=False)
    value = MinedTriplets(
        path=path, source=specter_raw.source, layout="columns", rows=table.num_rows, data_version=version,
        source_data_version=specter_raw.data_version, mined=True,
    )
    head = table.slice(0, 5).to_pylist()
    preview = markdown_table(["query", "positive", "negatives"],
                             [[r["query"][:80], r["positive"][:80], len(r["negatives"])] for r in head])
    metadata = {
        "mined": True,
        "reused": reused,
        "dagster/row_count": table.num_rows,
        "data_version": version,
        "source_data_version": specter_raw.data_version,
        "model": model,
        "settings": MetadataValue.json(settings.as_dict()),
        "path": MetadataValue.path(str(path)),
        "preview": MetadataValue.md(preview),
        **{f"stats/{k}": v for k, v in stats.items()},
    }
    return MaterializeResult(value=value, data_version=DataVersion(version), metadata=metadata)


__all__ = ["MiningConfig", "mined_data_version", "mined_triplets"]
