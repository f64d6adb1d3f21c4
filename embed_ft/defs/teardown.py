"""NIM deployments hold GPUs: `teardown_deployments_job` deletes them, and the NIM assets show it.

The fine-tuned NIMs of the chosen experiments (default: every experiment) are deleted; the shared base-model NIM is
deleted too once no experiment's fine-tuned NIM is left (no experiment needs it any more), unless `keep_baseline`.
For each deployment deleted (or found already gone) the job records on the NIM asset (partition):
- an `AssetObservation` with `status: deleted` (or `absent`), the deployment, the run and the time; and
- a failed `deployment_live` check evaluation (WARN), so the asset no longer looks like a live deployment.
The `deployment_live` checks also run after each NIM materialization and pass while the deployment is ready.
Materialized evaluations and reports are kept.
"""

import time
import warnings

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetObservation,
    Config,
    OpExecutionContext,
    PreviewWarning,
    asset_check,
    job,
    op,
)
from pydantic import Field, field_validator

from ..nemo.status import deployed_model, deployment_status, is_ready
from ..resources import DeploymentResource, EntityStoreResource
from ..spec.names import validate_name
from .experiments import EXPERIMENTS, experiment_names
from .serving import (
    BASELINE_DEPLOYMENT,
    baseline_nim,
    deployment_link,
    deployments_client,
    fine_tuned_deployment,
    fine_tuned_nim,
)

LIVE_CHECK = "deployment_live"


def _live_result(deployment: DeploymentResource, namespace: str, name: str) -> AssetCheckResult:
    doc = deployments_client(deployment).get_deployment(namespace, name)
    status = deployment_status(doc) if doc else "absent"
    return AssetCheckResult(
        passed=bool(doc) and is_ready(doc),
        severity=AssetCheckSeverity.WARN,
        description=f"Deployment {namespace}/{name} is {status}"
        + (f", serving {deployed_model(doc)}" if doc else " (deleted, or never deployed)"),
        metadata={"status": status, "deployment_url": deployment_link(deployment, f"{namespace}/{name}")},
    )


# Partitioned asset checks are a preview feature of Dagster 1.13: used knowingly (one verdict per experiment).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)

    @asset_check(
        asset=fine_tuned_nim,
        name=LIVE_CHECK,
        partitions_def=EXPERIMENTS,
        description="The experiment's NIM deployment exists and is ready (fails after teardown_deployments_job).",
    )
    def fine_tuned_nim_live(
        context: AssetCheckExecutionContext, deployment: DeploymentResource, entity_store: EntityStoreResource
    ) -> AssetCheckResult:
        return _live_result(deployment, entity_store.namespace, fine_tuned_deployment(context.partition_key))


@asset_check(
    asset=baseline_nim,
    name=LIVE_CHECK,
    description="The shared base-model NIM deployment exists and is ready (fails after teardown_deployments_job).",
)
def baseline_nim_live(deployment: DeploymentResource, entity_store: EntityStoreResource) -> AssetCheckResult:
    return _live_result(deployment, entity_store.namespace, BASELINE_DEPLOYMENT)


class TeardownConfig(Config):
    experiments: list[str] = Field(
        default_factory=list, description="Experiments whose fine-tuned NIMs are deleted; empty: every experiment."
    )
    keep_baseline: bool = Field(
        default=False, description="Keep the shared base-model NIM even when no experiment's NIM is left."
    )

    @field_validator("experiments")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return [validate_name("experiments[]", e) for e in v]


def _record_gone(context: OpExecutionContext, asset_key: str, partition, full_name: str, deleted: bool, url) -> None:
    status = "deleted" if deleted else "absent"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    description = f"NIM deployment {full_name} {status} by teardown run {context.run_id[:8]} at {when}"
    context.log_event(
        AssetObservation(
            asset_key=asset_key,
            partition=partition,
            description=description,
            metadata={"status": status, "deployment": full_name, "deployment_url": url, "teardown_run": context.run_id},
        )
    )
    context.log_event(  # accepted at run time; Dagster's annotation omits check evaluations
        AssetCheckEvaluation(  # type: ignore[arg-type]
            asset_key=AssetKey(asset_key),
            check_name=LIVE_CHECK,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=description,
            metadata={"status": status, "deployment_url": url},
            partition=partition,
        )
    )


def _was_materialized(context: OpExecutionContext, asset_key: str, partition) -> bool:
    event = context.instance.get_latest_materialization_event(AssetKey(asset_key))
    if partition is None:
        return event is not None
    return partition in context.instance.get_materialized_partitions(AssetKey(asset_key))


@op(description="Delete the fine-tuned NIMs of the chosen experiments, and the base NIM once no experiment needs it.")
def delete_deployments(
    context: OpExecutionContext,
    config: TeardownConfig,
    deployment: DeploymentResource,
    entity_store: EntityStoreResource,
) -> list[str]:
    dm, ns = deployments_client(deployment), entity_store.namespace
    known = experiment_names(context.instance)
    chosen = config.experiments or known
    removed: list[str] = []
    for experiment in chosen:
        full_name = f"{ns}/{fine_tuned_deployment(experiment)}"
        deleted = dm.delete_deployment(ns, fine_tuned_deployment(experiment))
        if deleted:
            removed.append(full_name)
            context.log.info(f"Deleted deployment {full_name}")
        if deleted or (experiment in known and _was_materialized(context, "fine_tuned_nim", experiment)):
            _record_gone(
                context, "fine_tuned_nim", experiment, full_name, deleted, deployment_link(deployment, full_name)
            )
    still_live = [e for e in known if e not in chosen and dm.get_deployment(ns, fine_tuned_deployment(e)) is not None]
    if config.keep_baseline or still_live:
        reason = "keep_baseline is set" if config.keep_baseline else f"still needed by {', '.join(still_live)}"
        context.log.info(f"Kept the shared base NIM {ns}/{BASELINE_DEPLOYMENT}: {reason}")
        return removed
    full_name = f"{ns}/{BASELINE_DEPLOYMENT}"
    deleted = dm.delete_deployment(ns, BASELINE_DEPLOYMENT)
    if deleted:
        removed.append(full_name)
        context.log.info(f"Deleted deployment {full_name}: no experiment's NIM is left")
    if deleted or _was_materialized(context, "baseline_nim", None):
        _record_gone(context, "baseline_nim", None, full_name, deleted, deployment_link(deployment, full_name))
    return removed


@job(description="Tear down NIM deployments (GPU cost); the NIM assets record the deletion. Evaluations are kept.")
def teardown_deployments_job():
    delete_deployments()


teardown_checks = [fine_tuned_nim_live, baseline_nim_live]
