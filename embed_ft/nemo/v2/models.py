"""v2 Models service: model entities, model providers, deployments; and the inference gateway's URLs.

Inference in v2 goes through the inference gateway: ``{base}/apis/inference-gateway/v2/workspaces/{ws}/provider/
{provider}/-/v1/embeddings`` is proxied to the provider's ``host_url`` + ``/v1/embeddings``. A NIM deployment makes
its own provider (``model_provider_id``); any OpenAI-compatible server (our local platform's NIM routes) is
registered as a provider by hand. The v1 :class:`~embed_ft.nemo.nim.NimClient` speaks to the gateway unchanged,
with :func:`gateway_provider_url` as its base.
"""

from __future__ import annotations

from typing import Any

from ..errors import JsonObject, NemoAPIError, json_object
from ..http import CreateResult, ServiceHTTP, create_or_fetch, segment
from ..polling import poll
from .contract import (
    GATEWAY,
    MODELS,
    CreateDeploymentConfigRequest,
    CreateDeploymentRequest,
    CreateModelEntityRequest,
    CreateModelProviderRequest,
    Deployment,
    ModelEntity,
    ModelProvider,
    workspace_path,
)


def gateway_provider_url(base_url: str, workspace: str, provider: str) -> str:
    """The OpenAI-compatible base (append ``/v1/embeddings``) of one provider behind the inference gateway."""
    return f"{base_url.rstrip('/')}{workspace_path(GATEWAY, segment(workspace), 'provider', segment(provider), '-')}"


def gateway_openai_url(base_url: str, workspace: str) -> str:
    """The gateway's model-routed OpenAI base: the request's ``model`` (``workspace/name``) picks the provider."""
    return f"{base_url.rstrip('/')}{workspace_path(GATEWAY, segment(workspace), 'openai', '-')}"


class ModelsClient:
    """Model entities, providers and deployments of one workspace's Models service."""

    def __init__(self, http: ServiceHTTP) -> None:
        self.http = http

    def _path(self, workspace: str, collection: str, *rest: str) -> str:
        return workspace_path(MODELS, segment(workspace), collection, *(segment(r) for r in rest))

    # Model entities.
    def get_model(self, workspace: str, name: str) -> ModelEntity | None:
        doc = self.http.get_or_none(self._path(workspace, "models", name), call="get model")
        return ModelEntity.model_validate(doc) if doc is not None else None

    def ensure_model(self, workspace: str, request: CreateModelEntityRequest) -> CreateResult:
        return create_or_fetch(
            lambda: self.http.post(self._path(workspace, "models"), json=request.body(), call="create model"),
            lambda: self.http.get_or_none(self._path(workspace, "models", request.name), call="get model"),
            f"model {workspace}/{request.name}",
        )

    def delete_model(self, workspace: str, name: str) -> None:
        _delete_if_present(self.http, self._path(workspace, "models", name), "delete model")

    # Model providers (an inference endpoint behind the gateway).
    def get_provider(self, workspace: str, name: str) -> ModelProvider | None:
        doc = self.http.get_or_none(self._path(workspace, "providers", name), call="get provider")
        return ModelProvider.model_validate(doc) if doc is not None else None

    def ensure_provider(
        self, workspace: str, name: str, host_url: str, description: str | None = None
    ) -> ModelProvider:
        """The provider ``name`` pointing at ``host_url``; an existing one pointing elsewhere is updated (PUT)."""
        request = CreateModelProviderRequest(name=name, host_url=host_url, description=description)
        doc = create_or_fetch(
            lambda: self.http.post(self._path(workspace, "providers"), json=request.body(), call="create provider"),
            lambda: self.http.get_or_none(self._path(workspace, "providers", name), call="get provider"),
            f"provider {workspace}/{name}",
        )
        provider = ModelProvider.model_validate(dict(doc))
        if provider.host_url.rstrip("/") != host_url.rstrip("/"):
            updated = self.http.request(
                "PUT", self._path(workspace, "providers", name), json=request.body(), call="update provider"
            ).json()
            provider = ModelProvider.model_validate(updated)
        return provider

    def provider_ready(self, workspace: str, name: str) -> bool:
        try:
            self.http.get(
                workspace_path(GATEWAY, segment(workspace), "provider", segment(name), "ready"), call="provider ready"
            )
        except NemoAPIError as exc:
            if exc.status in (404, 503):
                return False
            raise
        return True

    def wait_for_provider(self, workspace: str, name: str, timeout_s: float = 60.0, interval_s: float = 0.5) -> None:
        """Wait until the gateway routes to the provider: it learns new providers asynchronously (a request right
        after the create answers 404 "Model provider not found")."""
        poll(
            lambda: self.provider_ready(workspace, name),
            bool,
            timeout_s=timeout_s,
            interval_s=interval_s,
            what=f"the inference gateway to route provider {workspace}/{name}",
            max_interval_s=2.0,
        )

    # Deployments (upper-case statuses; `nemo/status.py` reads them).
    def ensure_deployment_config(self, workspace: str, request: CreateDeploymentConfigRequest) -> CreateResult:
        return create_or_fetch(
            lambda: self.http.post(
                self._path(workspace, "deployment-configs"), json=request.body(), call="create deployment config"
            ),
            lambda: self.http.get_or_none(
                self._path(workspace, "deployment-configs", request.name), call="get deployment config"
            ),
            f"deployment config {workspace}/{request.name}",
        )

    def get_deployment(self, workspace: str, name: str) -> Deployment | None:
        doc = self.http.get_or_none(self._path(workspace, "deployments", name), call="get deployment")
        return Deployment.model_validate(doc) if doc is not None else None

    def ensure_deployment(self, workspace: str, request: CreateDeploymentRequest) -> CreateResult:
        return create_or_fetch(
            lambda: self.http.post(self._path(workspace, "deployments"), json=request.body(), call="create deployment"),
            lambda: self.http.get_or_none(self._path(workspace, "deployments", request.name), call="get deployment"),
            f"deployment {workspace}/{request.name}",
        )

    def delete_deployment(self, workspace: str, name: str) -> JsonObject | None:
        answer = _delete_if_present(self.http, self._path(workspace, "deployments", name), "delete deployment")
        return json_object(answer, "delete deployment")


def _delete_if_present(http: ServiceHTTP, path: str, call: str) -> Any:
    try:
        return http.delete(path, call=call)
    except NemoAPIError as exc:
        if exc.status != 404:
            raise
        return None
