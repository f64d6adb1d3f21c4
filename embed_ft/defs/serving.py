"""Serving stage: deploy each experiment's fine-tuned model, and the base model once, as NIMs; wait until the gateway
serves them (on the v2 profile through the v2 deployments and the inference gateway, `serving_v2.py`).
`teardown.py` deletes them again."""

import time
from typing import Any

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, asset

from ..nemo.deployment import DEPLOYMENTS, nim_deployment_body
from ..nemo.status import deployed_model, deployment_status, is_failed
from ..nemo.v2.models import ModelsClient
from ..resources import DeploymentResource, EntityStoreResource, NimResource
from ..spec.experiment import ExperimentSpec
from .backend import GPU_STAGE_CONDITION
from .common import GPU_TAGS, OWNERS, backend_errors_as_failures, link
from .experiment_spec import StoredSpec, run_spec, used_spec_metadata
from .experiments import EXPERIMENTS
from .remote_jobs import (
    REMOTE_JOB_RETRY_POLICY,
    gateway_progress,
    not_retried_when_terminated,
    progress_logger,
    remote_wait,
    wait_for_deployment,
    wait_for_removal,
)
from .serving_v2 import DeploymentsV2, deploy_and_wait_v2, deployment_url
from .values import Deployment, FineTunedModel

NIM_CODE_VERSION = "2"
BASELINE_DEPLOYMENT = "baseline-nim"  # one base-model NIM shared by every experiment


def fine_tuned_deployment(experiment: str) -> str:
    """Name of an experiment's fine-tuned NIM deployment."""
    return f"{experiment}-ft-nim"


def deployment_link(deployment: DeploymentResource, full_name: str):
    if deployment.api_profile() == "v2":
        return deployment_url(deployment, full_name)
    return link(deployment.url(), f"{DEPLOYMENTS}/{full_name}")


def deployments_client(deployment: DeploymentResource) -> Any:
    """The deployments of either API generation, through ``get_deployment(ns, name)`` and
    ``delete_deployment(ns, name)`` (teardown, the live checks)."""
    if deployment.api_profile() == "v2":
        return DeploymentsV2(ModelsClient(deployment.http()))
    return deployment.client()


def deploy(
    context,
    spec: ExperimentSpec,
    deployment: DeploymentResource,
    nim: NimResource,
    entity_store: EntityStoreResource,
    name: str,
    model: str,
) -> Deployment:
    """Deploy ``model`` as ``<namespace>/name`` with the clients of the resources' API generation."""
    if deployment.api_profile() == "v2":
        return deploy_and_wait_v2(context, spec, deployment, entity_store, nim, entity_store.namespace, name, model)
    return deploy_and_wait(context, spec, deployment, nim, entity_store.namespace, name, model)


def deploy_and_wait(
    context,
    spec: ExperimentSpec,
    deployment: DeploymentResource,
    nim: NimResource,
    namespace: str,
    name: str,
    model: str,
) -> Deployment:
    """Deploy ``model`` as ``namespace/name`` (replacing a deployment of another model), wait for ready and for
    the NIM gateway to list it, then send one smoke embedding."""
    dm, nim_client = deployment.client(), nim.client()
    timeout_s, interval_s = spec.remote.deployment_timeout_s, spec.remote.poll_interval_s
    served_name = model.split("@", 1)[0]

    existing = dm.get_deployment(namespace, name)
    if existing is not None and (deployed_model(existing) != model or is_failed(existing)):
        context.log.info(
            f"Deployment {namespace}/{name} serves {deployed_model(existing)} ({deployment_status(existing)}); "
            f"replacing it with {model}."
        )
        dm.delete_deployment(namespace, name)
        wait_for_removal(
            context,
            name=f"{namespace}/{name}",
            fetch=lambda: dm.get_deployment(namespace, name),
            timeout_s=timeout_s,
            interval_s=interval_s,
        )
        existing = None
    if existing is None:
        nim_deployment = nim_deployment_body(spec.serving.nim_image, spec.serving.nim_tag, spec.serving.gpu)
        dm.create_deployment(name, namespace, model, nim_deployment)
        context.log.info(f"Requested deployment {namespace}/{name} of {model}")

    started = time.monotonic()
    wait_for_deployment(
        context,
        name=f"{namespace}/{name}",
        model=model,
        fetch=lambda: dm.get_deployment(namespace, name),
        message_of=lambda d: (d.get("status_details") or {}).get("description"),
        no_message="no description",
        timeout_s=timeout_s,
        interval_s=interval_s,
    )
    remaining = max(1.0, timeout_s - (time.monotonic() - started))
    what = f"NIM gateway listing {served_name}"
    with remote_wait(context, what, remaining):
        nim_client.wait_for_model(
            served_name,
            timeout_s=remaining,
            interval_s=interval_s,
            on_update=progress_logger(
                context,
                what,
                lambda ids: "listed" if served_name in ids else "waiting",
                progress_of=lambda ids: gateway_progress(served_name, ids),
            ),
            max_interval_s=4 * interval_s,
        )
    ready_after = time.monotonic() - started
    vectors = nim_client.embed(["embed-ft smoke test"], served_name, input_type="query")
    return Deployment(
        deployment=f"{namespace}/{name}",
        model=model,
        served_name=served_name,
        dimension=len(vectors[0]),
        nim_url=nim.url(),
        ready_after_s=ready_after,
    )


def _result(info: Deployment, deployment: DeploymentResource, used: StoredSpec, **extra: Any) -> MaterializeResult:
    metadata = {
        "deployment": info.deployment,
        "deployment_url": deployment_link(deployment, info.deployment),
        "status": "ready",
        "model": info.model,
        "served_name": info.served_name,
        "nim_url": info.nim_url,
        "dimension": float(info.dimension),
        "ready_after_s": float(info.ready_after_s),
        **extra,
        **used_spec_metadata(used, "serving"),
    }
    return MaterializeResult(value=info, metadata=metadata, data_version=DataVersion(info.model))


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="serving",
    code_version=NIM_CODE_VERSION,
    partitions_def=EXPERIMENTS,
    kinds={"nemo"},
    owners=OWNERS,
    tags=GPU_TAGS,
    pool="nemo_deployment",
    retry_policy=REMOTE_JOB_RETRY_POLICY,
    description="One experiment's fine-tuned model deployed as a NIM (`<experiment>-ft-nim`), ready and listed by "
    "the gateway, smoke-tested. teardown_deployments_job deletes it and records an observation saying so.",
)
@backend_errors_as_failures
@not_retried_when_terminated
def fine_tuned_nim(
    context: AssetExecutionContext,
    fine_tuned_model: FineTunedModel,
    deployment: DeploymentResource,
    nim: NimResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    used = run_spec(context)
    name = fine_tuned_deployment(context.partition_key)
    info = deploy(context, used.spec, deployment, nim, entity_store, name, fine_tuned_model.output_model)
    return _result(info, deployment, used)


@asset(
    deps=["preflight"],  # defs/preflight.py: no NIM for a run whose config, source or tasks are wrong
    automation_condition=GPU_STAGE_CONDITION,
    group_name="serving",
    code_version=NIM_CODE_VERSION,
    kinds={"nemo"},
    owners=OWNERS,
    tags=GPU_TAGS,
    pool="nemo_deployment",
    retry_policy=REMOTE_JOB_RETRY_POLICY,
    description=f"The base model deployed once as a NIM (`{BASELINE_DEPLOYMENT}`), shared by every experiment, so "
    "that the baseline is measured, not quoted. Its data version is the base model: a new base model redeploys it.",
)
@backend_errors_as_failures
@not_retried_when_terminated
def baseline_nim(
    context: AssetExecutionContext,
    deployment: DeploymentResource,
    nim: NimResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    used = run_spec(context)
    model = used.spec.serving.base_model
    info = deploy(context, used.spec, deployment, nim, entity_store, BASELINE_DEPLOYMENT, model)
    return _result(info, deployment, used)
