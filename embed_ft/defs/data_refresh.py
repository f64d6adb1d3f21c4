"""Data refresh: `data_refresh_job` rebuilds only the data assets; `specter_source_sensor` launches it on a change.

The sensor watches env `EMBED_FT_SPECTER_SOURCE` (default `embedding-data/SPECTER`) at `EMBED_FT_SPECTER_REVISION`
and requests `data_refresh_job` once per source change (new Hub sha, changed local content); that job materializes
only `specter_raw` and `specter_triplets`, never a GPU stage. Stopped by default, for every kind of source: it polls
the Hub, and a data rebuild should not start just because the daemon came up. Start it in Automation;
`build_specter_source_sensor(SpecterSourceConfig(...))` builds one for another source.
"""

import os
from typing import Optional

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from ..data.errors import SourceError
from ..data.specter import DEFAULT_HUB_DATASET
from .data import SpecterSourceConfig, source_version, specter_raw, specter_triplets

SOURCE_ENV = "EMBED_FT_SPECTER_SOURCE"
REVISION_ENV = "EMBED_FT_SPECTER_REVISION"


data_refresh_job = define_asset_job(
    "data_refresh_job",
    selection=AssetSelection.assets(specter_raw, specter_triplets),
    description="Rebuild only the data assets (snapshot + splits); never starts a GPU stage.",
)


def latest_materialized_version(instance, asset_key: AssetKey = AssetKey("specter_raw")) -> Optional[str]:
    event = instance.get_latest_materialization_event(asset_key)
    if event is None or event.asset_materialization is None:
        return None
    return (event.asset_materialization.tags or {}).get("dagster/data_version")


def build_specter_source_sensor(
    source: Optional[SpecterSourceConfig] = None,
    name: str = "specter_source_sensor",
    minimum_interval_seconds: int = 300,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
):
    """A sensor that requests `data_refresh_job` once per change of the source's data version.

    The cursor holds the last version seen; with no cursor yet, the version of the latest `specter_raw`
    materialization is the baseline, so turning the sensor on does not rebuild data that is already current.
    Hub sources are pinned to the sha the sensor saw. An unreachable source skips the tick (with the reason).
    """
    watched = source or SpecterSourceConfig(
        source=os.environ.get(SOURCE_ENV) or DEFAULT_HUB_DATASET, revision=os.environ.get(REVISION_ENV) or None
    )

    @sensor(
        name=name,
        job=data_refresh_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Watches {watched.source!r} (env {SOURCE_ENV}) and rebuilds the data assets when it changes. "
        "Stopped by default because it polls the Hugging Face Hub; start it in Automation.",
    )
    def _sensor(context: SensorEvaluationContext):
        try:
            _, version, sha = source_version(watched)
        except SourceError as exc:
            return SkipReason(f"cannot read the source version: {exc}")
        seen = context.cursor or latest_materialized_version(context.instance)
        if version == seen:
            context.update_cursor(version)
            return SkipReason(f"source {watched.source!r} unchanged (data version {version})")
        context.update_cursor(version)
        run_source = watched.model_dump(exclude_none=True)
        if sha:
            run_source["revision"] = sha  # build exactly the revision that triggered the run
        return RunRequest(
            run_config={"ops": {"specter_raw": {"config": run_source}}},
            tags={"embed_ft/source": watched.source[:200], "embed_ft/source_version": version},
        )

    return _sensor


specter_source_sensor = build_specter_source_sensor()
