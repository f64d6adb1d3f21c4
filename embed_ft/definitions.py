"""The `embed_ft` code location: every asset, check, job, sensor and resource, merged per domain."""

from __future__ import annotations

from typing import Any

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    define_asset_job,
)

from .defs import (
    data,
    data_refresh,
    evaluation,
    experiment_spec,
    leaderboard,
    preflight,
    report,
    serving,
    teardown,
    training,
)
from .resources import resources_from_env

lineage_assets = [
    experiment_spec.experiment_spec,
    preflight.preflight,
    *data.data_assets,
    training.training_dataset,
    training.fine_tuned_model,
    serving.baseline_nim,
    serving.fine_tuned_nim,
    evaluation.heldout_eval_dataset,
    evaluation.baseline_evaluation,
    evaluation.fine_tuned_evaluation,
    report.evaluation_report,
    leaderboard.experiment_leaderboard,
]
lineage_checks = [*data.data_checks, *teardown.teardown_checks]

full_lineage_job = define_asset_job(
    "full_lineage_job",
    selection=AssetSelection.assets(*lineage_assets),
    description="Materialize the whole lineage for one experiment (partition): its spec -> data -> upload -> fine-tune "
    "-> deploy -> evaluate -> report -> leaderboard. The shared baseline reattaches to its completed jobs.",
)

experiment_job = define_asset_job(
    "experiment_job",
    selection=AssetSelection.assets(
        experiment_spec.experiment_spec,
        training.fine_tuned_model,
        serving.fine_tuned_nim,
        evaluation.fine_tuned_evaluation,
        report.evaluation_report,
        leaderboard.experiment_leaderboard,
    ),
    description="One experiment (partition) only: fine-tune, deploy, evaluate, report against the existing shared "
    "baseline, refresh the leaderboard. Needs the data and baseline assets materialized.",
)

gpu_stages_automation = AutomationConditionSensorDefinition(
    "gpu_stages_automation",
    target=AssetSelection.groups("training", "serving", "evaluation"),
    default_status=DefaultSensorStatus.STOPPED,
    description="Rebuilds fine-tune, deploy and evaluate (per experiment) when their inputs change, with each "
    "experiment's stored spec. Stopped by default (GPU cost): start it in Automation -> gpu_stages_automation.",
)


def build_defs(resources: dict[str, Any]) -> Definitions:
    """The code location with ``resources``: the environment's when loaded (``defs``); the CLI builds it again
    after `--backend` has set the environment (`backends.use_backend`)."""
    return Definitions(
        assets=[data_refresh.specter_source, *lineage_assets],
        asset_checks=lineage_checks,
        jobs=[full_lineage_job, experiment_job, teardown.teardown_deployments_job, data_refresh.data_refresh_job],
        sensors=[data_refresh.specter_source_sensor, gpu_stages_automation],
        resources=resources,
    )


defs = build_defs(resources_from_env())
