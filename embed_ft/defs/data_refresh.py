"""The source in the lineage, and keeping the data assets in step with it.

- `specter_source`: an observable source asset, the SPECTER source itself. Its data version is the Hub revision
  sha (Hub dataset) or the content hash (local file/folder, BEIR folder), so "the source changed" shows in the UI
  as a new observation and `specter_raw` turns stale. Observe it from its asset page ("Observe sources").
- `specter_source_sensor` checks the same version every 5 minutes (when started: it is **stopped by default**);
  on a change it records the observation and requests `data_refresh_job` (only the data assets, never a GPU stage)
  once. The run carries no settings: it names (run tag `embed_ft/experiment`) the experiment whose spec built the
  data last, and the data assets run with that experiment's stored spec, so a refresh keeps the user's split.

The watched source: env `EMBED_FT_SPECTER_SOURCE` (+ `EMBED_FT_SPECTER_REVISION`) when set, else the `data` section
of the spec the latest `specter_raw` materialization was built with, else `embedding-data/SPECTER` on the Hub.
`build_specter_source_sensor(DataSpec(...))` builds a sensor for one fixed source.
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
from ..spec.experiment import DataSpec
from .common import CPU_TAGS
from .data import PINNED_REVISION_TAG, SOURCE_ASSET, source_version, specter_raw, specter_triplets
from .experiment_spec import EXPERIMENT_TAG, stored_spec
from .experiments import DEFAULT_EXPERIMENT
from .mining import mined_triplets

SOURCE_ENV = "EMBED_FT_SPECTER_SOURCE"
REVISION_ENV = "EMBED_FT_SPECTER_REVISION"


data_refresh_job = define_asset_job(
    "data_refresh_job",
    selection=AssetSelection.assets(specter_raw, mined_triplets, specter_triplets),
    description="Rebuild only the data assets (snapshot + mining + splits); never starts a GPU stage.",
)


DATA_VERSION_TAG = "dagster/data_version"


def latest_materialized_version(instance, asset_key: AssetKey = AssetKey("specter_raw")) -> Optional[str]:
    event = instance.get_latest_materialization_event(asset_key)
    if event is None or event.asset_materialization is None:
        return None
    return (event.asset_materialization.tags or {}).get(DATA_VERSION_TAG)


def data_experiment(instance) -> str:
    """The experiment whose spec built `specter_raw` last (`experiment` in its metadata); else the default one."""
    event = instance.get_latest_materialization_event(AssetKey("specter_raw"))
    metadata = (event.asset_materialization.metadata or {}) if event and event.asset_materialization else {}
    value = getattr(metadata.get("experiment"), "value", None)
    return value if isinstance(value, str) else DEFAULT_EXPERIMENT


def watched_source(instance) -> DataSpec:
    """The source to watch: the env's, else the data section of the spec that built `specter_raw` last, else the
    Hub default."""
    if os.environ.get(SOURCE_ENV):
        return DataSpec(source=os.environ[SOURCE_ENV], revision=os.environ.get(REVISION_ENV) or None)
    found = stored_spec(instance, data_experiment(instance))
    return found.spec.data.resolved() if found else DataSpec()


def describe_source(watched: DataSpec) -> dict:
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
        description="The SPECTER source (Hugging Face dataset or local "
        "file/folder) as it is now: its data version is the "
        "Hub revision sha or the content hash, so a change shows here and makes specter_raw stale.",
    )
    def specter_source(context) -> ObserveResult:
        seen = describe_source(watched_source(context.instance))
        return ObserveResult(data_version=DataVersion(seen["version"]), metadata=seen["metadata"])


def build_specter_source_sensor(
    source: Optional[DataSpec] = None,
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
            f"Watches {source.source!r}"
            if source
            else f"Watches the SPECTER source (env {SOURCE_ENV}, else the source specter_raw was last built from)"
        )
        + " — a Hub dataset by its revision sha, a local file or folder by its content hash — and rebuilds the data "
        "assets once per change, with the stored spec of the experiment that built them. Stopped by default: start "
        "it in Automation.",
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
        tags = {
            "embed_ft/source": watched.source[:200],
            "embed_ft/source_version": version,
            EXPERIMENT_TAG: data_experiment(context.instance),
        }
        if seen["sha"]:
            tags[PINNED_REVISION_TAG] = seen["sha"]  # build exactly the revision that triggered the run
        # No settings are given: the data assets run with the stored spec of the experiment the tag names.
        observation = AssetObservation(
            asset_key=SOURCE_ASSET, metadata=seen["metadata"], tags={DATA_VERSION_TAG: version}
        )
        return SensorResult(
            run_requests=[RunRequest(tags=tags)],
            asset_events=[observation],
        )

    return _sensor


specter_source_sensor = build_specter_source_sensor()
