"""The source in the lineage, and keeping the data assets in step with it.

- `specter_source`: an observable source asset, the SPECTER source itself. Its data version is the Hub revision
  sha (Hub dataset) or the content hash (local file/folder, BEIR folder), so "the source changed" shows in the UI
  as a new observation and `specter_raw` turns stale. Observe it from its asset page ("Observe sources").
- `specter_source_sensor` checks the same version every 5 minutes (when started: it is **stopped by default**);
  on a change it records the observation and requests `data_refresh_job` (only the data assets, never a GPU stage)
  once. The run gets no split settings of its own: the data assets reuse the settings stored with their latest
  materialization (`settings.py`), so a refresh keeps the user's split.

The watched source: env `EMBED_FT_SPECTER_SOURCE` (+ `EMBED_FT_SPECTER_REVISION`) when set, else the source the
latest `specter_raw` materialization was built from, else `embedding-data/SPECTER` on the Hub.
`build_specter_source_sensor(SpecterSourceConfig(...))` builds a sensor for one fixed source.
"""

import os
import warnings
from typing import Optional

from dagster import (
    AssetKey,
    AssetObservation,
    AssetSelection,
    BetaWarning,
    DataVersion,
    DefaultSensorStatus,
    ObserveResult,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    observable_source_asset,
    sensor,
)

from ..data.errors import SourceError
from ..data.specter import DEFAULT_HUB_DATASET
from .common import CPU_TAGS
from .data import (
    PINNED_REVISION_TAG,
    SOURCE_ASSET,
    SpecterSourceConfig,
    source_version,
    specter_raw,
    specter_triplets,
)
from .mining import mined_triplets
from .settings import recorded_settings

SOURCE_ENV = "EMBED_FT_SPECTER_SOURCE"
REVISION_ENV = "EMBED_FT_SPECTER_REVISION"


data_refresh_job = define_asset_job(
    "data_refresh_job",
    selection=AssetSelection.assets(specter_raw, mined_triplets, specter_triplets),
    description="Rebuild only the data assets (snapshot + mining + splits); never starts a GPU stage.",
)


DATA_VERSION_TAG = "dagster/data_version"
SOURCE_FIELDS = ("source", "revision", "split", "subset", "source_kind")


def latest_materialized_version(instance, asset_key: AssetKey = AssetKey("specter_raw")) -> Optional[str]:
    event = instance.get_latest_materialization_event(asset_key)
    if event is None or event.asset_materialization is None:
        return None
    return (event.asset_materialization.tags or {}).get(DATA_VERSION_TAG)


def watched_source(instance) -> SpecterSourceConfig:
    """The source to watch: the env's, else the one `specter_raw` was last built from, else the Hub default."""
    if os.environ.get(SOURCE_ENV):
        return SpecterSourceConfig(source=os.environ[SOURCE_ENV], revision=os.environ.get(REVISION_ENV) or None)
    stored = recorded_settings(instance, "specter_raw")
    return SpecterSourceConfig(**{k: v for k, v in stored.items() if k in SOURCE_FIELDS and v is not None} or {"source": DEFAULT_HUB_DATASET})


def describe_source(watched: SpecterSourceConfig) -> dict:
    """(kind, data version, Hub sha) of ``watched`` as observation metadata and data version; SourceError if
    unreadable."""
    kind, version, sha = source_version(watched)
    how = "Hub revision sha" if kind == "hub" else "content hash"
    metadata = {"source": watched.source, "source_kind": kind, "version_is": how, "revision": sha or "(content hash)"}
    return {"kind": kind, "version": version, "sha": sha, "metadata": metadata}


# Observable source assets are beta in Dagster 1.13: used knowingly, so the warning is not repeated on every load.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)

    @observable_source_asset(
        name=SOURCE_ASSET,
        group_name="data",
        tags=CPU_TAGS,
        description="The SPECTER source (Hugging Face dataset or local " "file/folder) as it is now: its data version is the "
        "Hub revision sha or the content hash, so a change shows here and makes specter_raw stale.",
    )
    def specter_source(context) -> ObserveResult:
        seen = describe_source(watched_source(context.instance))
        return ObserveResult(data_version=DataVersion(seen["version"]), metadata=seen["metadata"])


def build_specter_source_sensor(
    source: Optional[SpecterSourceConfig] = None,
    name: str = "specter_source_sensor",
    minimum_interval_seconds: int = 300,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
):
    """A sensor that requests `data_refresh_job` once per change of the source's data version.

    The cursor holds the last version seen; with no cursor yet, the version of the latest `specter_raw`
    materialization is the baseline, so turning the sensor on does not rebuild data that is already current.
    Each change is also recorded as an observation of `specter_source`. A Hub source is built at exactly the sha
    the sensor saw (run tag, not a stored setting). An unreadable source skips the tick, with the reason.
    """

    @sensor(
        name=name,
        job=data_refresh_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Watches {source.source!r}" if source else
            f"Watches the SPECTER source (env {SOURCE_ENV}, else the source specter_raw was last built from)"
        )
        + " — a Hub dataset by its revision sha, a local file or folder by its content hash — and rebuilds the data "
        "assets once per change, with their stored split settings. Stopped by default: start it in Automation.",
    )
    def _sensor(context: SensorEvaluationContext):
        watched = source or watched_source(context.instance)
        try:
            seen = describe_source(watched)
        except SourceError as exc:
            return SkipReason(f"cannot read the source version: {exc}")
        version = seen["version"]
        previous = context.cursor or latest_materialized_version(context.instance)
        context.update_cursor(version)
        if version == previous:
            return SkipReason(f"source {watched.source!r} unchanged (data version {version})")
        tags = {"embed_ft/source": watched.source[:200], "embed_ft/source_version": version}
        if seen["sha"]:
            tags[PINNED_REVISION_TAG] = seen["sha"]  # build exactly the revision that triggered the run
        # Only the source is given; everything else (revision choice, split sizes, mining) comes from the stored
        # settings of the data assets.
        run_source = {k: v for k, v in watched.model_dump(exclude_none=True).items() if k in SOURCE_FIELDS}
        observation = AssetObservation(
            asset_key=SOURCE_ASSET, metadata=seen["metadata"], tags={DATA_VERSION_TAG: version}
        )
        return SensorResult(
            run_requests=[RunRequest(run_config={"ops": {"specter_raw": {"config": run_source}}}, tags=tags)],
            asset_events=[observation],
        )

    return _sensor


specter_source_sensor = build_specter_source_sensor()
