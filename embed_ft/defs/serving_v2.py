"""The serving stage on the v2 profile (NeMo Platform): a deployment config and a deployment of the Models service
per NIM, waited on until ``READY``, then reached through the inference gateway (`nemo/v2/models.py`).

On a cluster a NIM deployment makes its own model provider (``model_provider_id``). Here the embedded platform
serves the deployments (and its own route to each one's provider), so each is registered by URL as a provider of
the platform that holds the gateway (Helix). Either way the `Deployment` value's ``nim_url`` is the gateway's
OpenAI-compatible base for that provider, and the evaluations go through it. `DeploymentsV2` gives teardown and the
live checks the same two calls as the v1 client.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from dagster import Failure

from ..nemo.status import deployment_status, is_failed
from ..nemo.v2.contract import MODELS, CreateDeploymentConfigRequest, CreateDeploymentRequest, workspace_path
from ..nemo.v2.files import FilesClient
from ..nemo.v2.models import ModelsClient, gateway_provider_url
from ..platform.settings import service_urls
from ..resources import DeploymentResource, EntityStoreResource, NimResource
from ..spec.experiment import ExperimentSpec
from .common import link, stable_hash
from .evaluation_v2 import provider_name
from .remote_jobs import gateway_progress, progress_logger, remote_wait, wait_for_deployment, wait_for_removal
from .values import Deployment

CONFIG_NAME_CHARS = 50  # + "-" + 10 hash characters: within the v2 name's 63


class DeploymentsV2:
    """v2 deployments through the two calls of the v1 `DeploymentClient` that teardown and the checks make."""

    def __init__(self, models: ModelsClient) -> None:
        self.models = models

    def get_deployment(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        found = self.models.get_deployment(namespace, name)
        return found.model_dump() if found is not None else None

    def delete_deployment(self, namespace: str, name: str) -> bool:
        """Delete it; False when it did not exist."""
        if self.models.get_deployment(namespace, name) is None:
            return False
        self.models.delete_deployment(namespace, name)
        return True


def deployment_path(workspace: str, name: str) -> str:
    return workspace_path(MODELS, workspace, "deployments", name)


def deployment_config(spec: ExperimentSpec, name: str, model: str) -> CreateDeploymentConfigRequest:
    """The NIM deployment config of ``model`` (``namespace/name``); its name carries a hash of its body, so a new
    model or image is a new config, never an edit of one a deployment uses."""
    namespace, _, model_name = model.rpartition("/")
    body: dict[str, Any] = dict(
        engine="nim",
        model_spec={"model_namespace": namespace, "model_name": model_name},
        executor_config={
            "gpu": spec.serving.gpu,
            "image_name": spec.serving.nim_image,
            "image_tag": spec.serving.nim_tag,
        },
    )
    config_name = f"{name[:CONFIG_NAME_CHARS].rstrip('-')}-{stable_hash(body)[:10]}"
    return CreateDeploymentConfigRequest(name=config_name, description=f"embed-ft NIM of {model}", **body)


def _uses_config(doc: dict[str, Any], workspace: str, config: str) -> bool:
    return str(doc.get("config") or "") in (config, f"{workspace}/{config}")


def gateway_provider(
    doc: dict[str, Any], deployment: DeploymentResource, nim: NimResource, providers: ModelsClient, workspace: str
) -> str:
    """The gateway provider of a ready deployment. On one platform (a cluster) it is the provider the deployment
    made (``model_provider_id``). Deployments served apart from the gateway (this machine: the embedded platform,
    while Helix holds the gateway) are registered there by URL, pointing at the serving platform's own route to
    that provider (or, without one, at its NIM routes)."""
    made = str(doc.get("model_provider_id") or "").rsplit("/", 1)[-1]
    if deployment.url() == nim.url():
        if not made:
            raise Failure(f"Deployment {workspace}/{doc.get('name')} is ready but names no model provider")
        return made
    upstream = gateway_provider_url(deployment.url(), workspace, made) if made else None
    upstream = upstream or service_urls(deployment.url())["NIM_URL"]
    provider = provider_name(f"{workspace}/{doc.get('name')}")
    FilesClient(providers.http).ensure_workspace(workspace)  # the baseline NIM may come before any upload
    providers.ensure_provider(workspace, provider, upstream, description=f"embed-ft NIM {workspace}/{doc.get('name')}")
    return provider


def deploy_and_wait_v2(
    context,
    spec: ExperimentSpec,
    deployment: DeploymentResource,
    entity_store: EntityStoreResource,
    nim: NimResource,
    workspace: str,
    name: str,
    model: str,
) -> Deployment:
    """`serving.deploy_and_wait` on v2: deploy ``model`` as ``workspace/name`` (replacing a deployment of another
    config), wait for ``READY``, route the gateway to it, then send one smoke embedding through the gateway."""
    models = ModelsClient(deployment.http())
    deployments = DeploymentsV2(models)
    timeout_s, interval_s = spec.remote.deployment_timeout_s, spec.remote.poll_interval_s
    config = deployment_config(spec, name, model)

    existing = deployments.get_deployment(workspace, name)
    if existing is not None and (not _uses_config(existing, workspace, config.name) or is_failed(existing)):
        context.log.info(
            f"Deployment {workspace}/{name} uses config {existing.get('config')} ({deployment_status(existing)}); "
            f"replacing it with {config.name} ({model})."
        )
        deployments.delete_deployment(workspace, name)
        wait_for_removal(
            context,
            name=f"{workspace}/{name}",
            fetch=lambda: deployments.get_deployment(workspace, name),
            timeout_s=timeout_s,
            interval_s=interval_s,
        )
        existing = None
    if existing is None:
        models.ensure_deployment_config(workspace, config)
        models.ensure_deployment(workspace, CreateDeploymentRequest(name=name, config=config.name))
        context.log.info(f"Requested deployment {workspace}/{name} of {model} (config {config.name})")
    started = time.monotonic()
    doc = wait_for_deployment(
        context,
        name=f"{workspace}/{name}",
        model=model,
        fetch=lambda: deployments.get_deployment(workspace, name),
        message_of=lambda d: d.get("status_message"),
        no_message="no message",
        timeout_s=timeout_s,
        interval_s=interval_s,
    )
    providers = ModelsClient(entity_store.http())
    provider = gateway_provider(doc, deployment, nim, providers, workspace)
    remaining = max(1.0, timeout_s - (time.monotonic() - started))
    what = f"inference gateway routing {workspace}/{provider}"
    with remote_wait(context, what, remaining):
        providers.wait_for_provider(workspace, provider, timeout_s=remaining, interval_s=min(interval_s, 2.0))
    gateway = gateway_provider_url(nim.url(), workspace, provider)
    nim_client = nim.client_at(gateway)
    with remote_wait(context, f"gateway listing {model}", remaining):
        nim_client.wait_for_model(
            model,
            timeout_s=remaining,
            interval_s=interval_s,
            on_update=progress_logger(
                context,
                f"gateway listing {model}",
                lambda ids: ", ".join(ids) or "waiting",
                progress_of=lambda ids: gateway_progress(model, ids),
            ),
            max_interval_s=4 * interval_s,
        )
    ready_after = time.monotonic() - started
    vectors = nim_client.embed(["embed-ft smoke test"], model, input_type="query")
    return Deployment(
        deployment=f"{workspace}/{name}",
        model=model,
        served_name=model,
        dimension=len(vectors[0]),
        nim_url=gateway,
        ready_after_s=ready_after,
        provider=provider,
    )


def deployment_url(deployment: DeploymentResource, full_name: str) -> Any:
    """Where the UI links a deployment on v2."""
    workspace, _, name = full_name.partition("/")
    return link(deployment.url(), deployment_path(workspace, name))
