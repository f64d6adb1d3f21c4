"""The `embed_ft` code location: every asset, check, job, sensor and resource, merged per domain."""

from __future__ import annotations

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus, Definitions, define_asset_job

from .defs import data, data_refresh, evaluation, serving, training
from .resources import resources_from_env

lineage_assets = [
    *data.data_assets,
    training.training_dataset,
    training.fine_tuned_model,
    serving.baseline_nim,
    serving.fine_tuned_nim,
    evaluation.heldout_eval_dataset,
    evaluation.baseline_evaluation,
    evaluation.fine_tuned_evaluation,
    evaluation.evaluation_report,
]

full_lineage_job = define_asset_job(
    "full_lineage_job",
    selection=AssetSelection.assets(*lineage_assets),
    description="Materialize the whole lineage: SPECTER data -> upload -> fine-tune -> deploy -> evaluate -> report.",
)

gpu_stages_automation = AutomationConditionSensorDefinition(
    "gpu_stages_automation",
    target=AssetSelection.groups("training", "serving", "evaluation"),
    default_status=DefaultSensorStatus.STOPPED,
    description="Rebuilds fine-tune, deploy and evaluate when their inputs change. Stopped by default (GPU cost): "
    "start it in Automation -> gpu_stages_automation.",
)

defs = Definitions(
    assets=lineage_assets,
    asset_checks=[*data.data_checks],
    jobs=[full_lineage_job, serving.teardown_deployments_job, data_refresh.data_refresh_job],
    sensors=[data_refresh.specter_source_sensor, gpu_stages_automation],
    resources=resources_from_env(),
)
