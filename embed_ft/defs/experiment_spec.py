"""`experiment_spec`: the spec of each experiment (partition), stored once per version as the asset's materialization.

Run config (Launchpad, `embed-ft run`): ``ops.experiment_spec.config`` = ``{"preset": NAME, "changes":
{"training.learning_rate": 5e-5}}``. The spec is the preset's (on the backend's profile) with the changes; with no
preset it is the experiment's stored spec with the changes (the default preset for a new experiment). It is
validated here, once (`spec/changes.py`; the error names the field), and stored as this asset's materialization:
``spec`` (the whole document), ``spec_version``, ``differs_from_preset`` and ``changed_from_previous``. A changed
field is a new version (new data version: the experiment's downstream assets turn stale).

Every other asset reads its settings with `run_spec(context)`: the stored spec of the run's experiment, never a
mix of fields from earlier runs. The experiment is the partition key; for an unpartitioned asset the run's
partition (a lineage run), else the run tag ``embed_ft/experiment`` (the source sensor sets it), else the
experiment this asset was last built for. Each asset records ``experiment``, ``spec_version`` and the section it
used (``settings``) in its own metadata.
"""

from dataclasses import dataclass
from typing import Any, Optional

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    DagsterInstance,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ..profiles import BackendProfile
from ..resources import CustomizerResource
from ..spec.changes import SpecError, apply_changes, differences, parse_spec, spec_version
from ..spec.experiment import ExperimentSpec
from ..spec.presets import DEFAULT_PRESET, PRESETS, preset_spec
from .backend import backend_defaults
from .common import CPU_TAGS, OWNERS
from .experiments import DEFAULT_EXPERIMENT, EXPERIMENTS

SPEC_ASSET = "experiment_spec"
EXPERIMENT_TAG = "embed_ft/experiment"
PARTITION_TAG = "dagster/partition"
SPEC_CODE_VERSION = "1"


class SpecChoice(Config):
    preset: Optional[str] = Field(
        default=None,
        description=f"Start from this preset ({', '.join(PRESETS)}); empty: the experiment's stored "
        f"spec ({DEFAULT_PRESET} for a new experiment).",
    )
    # A bare dict is a permissive map in Dagster's config schema: values may be null (a cleared field) or lists.
    changes: dict = Field(
        default_factory=dict, description='Fields to change, by dotted name: {"training.learning_rate": 5e-5}.'
    )


@dataclass(frozen=True)
class StoredSpec:
    experiment: str
    spec: ExperimentSpec
    version: str


def spec_metadata(spec: ExperimentSpec, previous: Optional[ExperimentSpec], profile: BackendProfile) -> dict:
    from_preset = differences(spec, preset_spec(spec.preset, profile)) if spec.preset in PRESETS else {}
    changed = differences(spec, previous) if previous is not None else {"(new experiment)": True}
    return {
        "spec": MetadataValue.json(spec.model_dump(mode="json")),
        "spec_version": spec_version(spec),
        "preset": spec.preset or "",
        "profile": spec.profile,
        "differs_from_preset": MetadataValue.json(from_preset),
        "changed_from_previous": MetadataValue.json(changed),
    }


def build_spec(
    choice_preset: Optional[str], changes: dict[str, Any], previous: Optional[ExperimentSpec], profile: BackendProfile
) -> ExperimentSpec:
    """The spec a run asks for: the preset's (or the stored one, or the default preset's) with ``changes``."""
    if choice_preset is not None:
        base = preset_spec(choice_preset, profile)
    else:
        base = previous if previous is not None else preset_spec(DEFAULT_PRESET, profile)
    return apply_changes(base, changes)


def stored_spec(instance: DagsterInstance, experiment: str) -> Optional[StoredSpec]:
    """The latest stored spec of ``experiment``; None when it has none. Failure when it can no longer be read."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(SPEC_ASSET), asset_partitions=[experiment]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    entry = (records[0].asset_materialization.metadata or {}).get("spec")
    try:
        spec = parse_spec(getattr(entry, "value", None))
    except SpecError as exc:
        raise Failure(
            f"The stored spec of experiment {experiment!r} is no longer valid ({exc}); materialize "
            f"{SPEC_ASSET} [{experiment}] with a preset to replace it.",
            allow_retries=False,
        ) from None
    return StoredSpec(experiment, spec, spec_version(spec))


def spec_history(instance: DagsterInstance, experiment: str, limit: int = 50) -> list[dict[str, Any]]:
    """Every stored version of ``experiment``'s spec, oldest first: run, time, version, preset, what changed."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(SPEC_ASSET), asset_partitions=[experiment]), limit=limit
    ).records
    rows = []
    for record in reversed(records):
        metadata = (record.asset_materialization.metadata or {}) if record.asset_materialization else {}
        value = {key: getattr(entry, "value", entry) for key, entry in metadata.items() if key != "spec"}
        rows.append({"run_id": record.run_id, "timestamp": record.timestamp, **value})
    return rows


def _recorded_experiment(context: AssetExecutionContext) -> Optional[str]:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    entry = ((event.asset_materialization.metadata or {}) if event and event.asset_materialization else {}).get(
        "experiment"
    )
    value = getattr(entry, "value", None)
    return value if isinstance(value, str) else None


def run_experiment(context: AssetExecutionContext) -> str:
    """The experiment whose spec this step uses (see the module docstring for the order)."""
    if context.has_partition_key:
        return context.partition_key
    tags = context.run.tags
    return tags.get(PARTITION_TAG) or tags.get(EXPERIMENT_TAG) or _recorded_experiment(context) or DEFAULT_EXPERIMENT


def run_spec(context: AssetExecutionContext) -> StoredSpec:
    """The stored spec of this step's experiment; Failure (no retry) when the experiment has none."""
    experiment = run_experiment(context)
    found = stored_spec(context.instance, experiment)
    if found is None:
        raise Failure(
            f"Experiment {experiment!r} has no stored spec: run `embed-ft run --experiment {experiment}` "
            f"or materialize {SPEC_ASSET} [{experiment}] first.",
            allow_retries=False,
        )
    context.log.info(f"Using the spec of experiment {experiment!r}, version {found.version}")
    return found


def used_spec_metadata(used: StoredSpec, section: str) -> dict[str, Any]:
    """What an asset records about the spec it ran with: experiment, version and the section it used."""
    settings = getattr(used.spec, section).model_dump(mode="json")
    return {"experiment": used.experiment, "spec_version": used.version, "settings": MetadataValue.json(settings)}


@asset(
    partitions_def=EXPERIMENTS,
    group_name="experiment",
    code_version=SPEC_CODE_VERSION,
    kinds={"python"},
    owners=OWNERS,
    tags=CPU_TAGS,
    description="The experiment's spec (partition = experiment): every setting of its data, mining, split, "
    "training, serving and evaluation, from a preset plus named changes, validated once. Each materialization is one "
    "version; every asset of the experiment runs with exactly this spec.",
)
def experiment_spec(
    context: AssetExecutionContext, config: SpecChoice, customizer: CustomizerResource
) -> MaterializeResult:
    experiment = context.partition_key
    previous = stored_spec(context.instance, experiment)
    profile = backend_defaults(customizer)
    try:
        spec = build_spec(config.preset, config.changes, previous.spec if previous else None, profile)
    except (SpecError, ValueError) as exc:
        raise Failure(f"Invalid spec for experiment {experiment!r}: {exc}", allow_retries=False) from None
    metadata = spec_metadata(spec, previous.spec if previous else None, profile)
    context.log.info(
        f"Spec {metadata['spec_version']} of {experiment!r}; differs from preset {spec.preset}: "
        f"{metadata['differs_from_preset'].value or 'nothing'}"
    )
    return MaterializeResult(value=spec, metadata=metadata, data_version=DataVersion(spec_version(spec)))
