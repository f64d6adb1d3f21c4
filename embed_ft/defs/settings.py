"""Durable run settings: what a user chose for an asset (partition) is what sensor- and automation-launched runs use.

Every asset that takes a run config records the settings chosen for it (the fields given explicitly, plus the ones
it inherited) as the JSON metadata entry ``settings`` of its materialization. A later run resolves each field as:

1. the value given explicitly in this run's config (Launchpad, `embed-ft run`, a sensor's run request);
2. else the value in ``settings`` of the latest materialization of the same asset and partition (the experiment);
3. else, for some assets, the settings of a related asset (a new experiment's evaluation takes the baseline's tasks);
4. else the Config default (which may mean "the backend's default").

So the settings live with the experiment's (partition's) own materialization history in the Dagster instance: they
are visible on the asset page, survive restarts, need no extra file, and a run launched by `gpu_stages_automation` or
`specter_source_sensor` rebuilds with exactly what the user last chose (issue 14, item 9).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, TypeVar

from dagster import AssetKey, AssetRecordsFilter, Config, DagsterInstance, Failure, MetadataValue
from pydantic import ValidationError

SETTINGS_METADATA_KEY = "settings"
C = TypeVar("C", bound=Config)


def explicit_settings(config: Config) -> dict[str, Any]:
    """The fields this run's config gave explicitly (pydantic's ``model_fields_set``), JSON-ready."""
    dumped = config.model_dump(mode="json")
    return {name: dumped[name] for name in sorted(config.model_fields_set) if name in dumped}


def recorded_settings(
    instance: DagsterInstance, asset_key: AssetKey | str, partition: Optional[str] = None
) -> dict[str, Any]:
    """``settings`` of the latest materialization of ``asset_key`` (in ``partition``); {} when there is none."""
    key = AssetKey.from_coercible(asset_key)
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return {}
    entry = (records[0].asset_materialization.metadata or {}).get(SETTINGS_METADATA_KEY)
    value = getattr(entry, "value", None)
    return dict(value) if isinstance(value, dict) else {}


def resolve_settings(
    context, config: C, fallbacks: Sequence[tuple[str, Optional[str]]] = ()
) -> tuple[C, dict[str, Any]]:
    """(effective config, chosen settings): explicit fields > this asset's (partition's) recorded settings >
    ``fallbacks`` ((asset, partition) pairs, first wins) > Config defaults. Stale keys (fields that no longer exist)
    are dropped."""
    fields = type(config).model_fields
    partition = context.partition_key if context.has_partition_key else None
    layers = [recorded_settings(context.instance, key, part) for key, part in reversed(list(fallbacks))]
    layers.append(recorded_settings(context.instance, context.asset_key, partition))
    inherited: dict[str, Any] = {}
    for layer in layers:
        inherited.update({k: v for k, v in layer.items() if k in fields})
    chosen = {**inherited, **explicit_settings(config)}
    try:
        effective = type(config)(**chosen)
    except ValidationError as exc:
        raise Failure(
            f"The settings stored with {context.asset_key.to_user_string()}"
            f"{f' [{partition}]' if partition else ''} are no longer valid ({exc.errors()[0]['msg']}); "
            "give the field explicitly in the run config to replace them."
        ) from None
    if inherited:
        reused = {k: v for k, v in inherited.items() if k not in config.model_fields_set}
        if reused:
            context.log.info(f"Using stored settings (not in this run's config): {reused}")
    return effective, chosen


def settings_metadata(chosen: dict[str, Any]) -> dict[str, Any]:
    """The metadata entry that makes ``chosen`` the stored settings of this asset (partition)."""
    return {SETTINGS_METADATA_KEY: MetadataValue.json(chosen)}
