"""NeMo Platform v2 Models routes the platform serves: deployment configs, deployments, the provider each deployment
makes, its output model entities; and the inference gateway's per-provider routes in front of this platform's NIM.

``/apis/models/v2/workspaces/{ws}/deployment-configs``, ``/deployments`` (create 201, get, list, delete 202),
``/providers/{name}`` (a deployment's provider) and ``/models/{name}`` (a model entity this platform holds).
The gateway: ``/apis/inference-gateway/v2/workspaces/{ws}/provider/{name}/ready`` and ``.../-/v1/models``; its
``.../-/v1/embeddings`` is the NIM route itself, mounted by ``app.py`` behind :func:`ready_provider`.
Bodies are validated by the v2 wire contract; answers are Helix's shapes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from embed_ft.nemo.v2.contract import (
    GATEWAY,
    MODELS,
    CreateDeploymentConfigRequest,
    CreateDeploymentRequest,
    Deployment,
    DeploymentConfig,
    ModelEntity,
    ModelProvider,
    workspace_path,
)

from ..services.v2_deployments import V2Deployments
from .deps import Context, Listing, Serving, answer, answer_page

router = APIRouter()
CONFIGS = workspace_path(MODELS, "{workspace}", "deployment-configs")
DEPLOYMENTS = workspace_path(MODELS, "{workspace}", "deployments")
PROVIDER = workspace_path(GATEWAY, "{workspace}", "provider", "{provider}")
GATEWAY_EMBEDDINGS = PROVIDER + "/-/v1/embeddings"


def _v2_deployments(ctx: Context) -> V2Deployments:
    return ctx.v2_deployments


V2 = Annotated[V2Deployments, Depends(_v2_deployments)]


def ready_provider(workspace: str, provider: str, v2: V2) -> None:
    """The gateway routes only to the provider of a READY deployment (404 otherwise, as Helix's gateway)."""
    v2.require_ready_provider(workspace, provider)


# ---- deployment configs


@router.post(CONFIGS, status_code=201)
def create_deployment_config(workspace: str, body: CreateDeploymentConfigRequest, v2: V2):
    return answer(DeploymentConfig, v2.create_config(workspace, body))


@router.get(CONFIGS)
def list_deployment_configs(workspace: str, v2: V2, query: Listing):
    return answer_page(query, DeploymentConfig, v2.list_configs(workspace))


@router.get(CONFIGS + "/{name}")
def get_deployment_config(workspace: str, name: str, v2: V2):
    return answer(DeploymentConfig, v2.get_config(workspace, name))


@router.delete(CONFIGS + "/{name}", status_code=204)
def delete_deployment_config(workspace: str, name: str, v2: V2):
    v2.delete_config(workspace, name)


# ---- deployments


@router.post(DEPLOYMENTS, status_code=201)
def create_deployment(workspace: str, body: CreateDeploymentRequest, v2: V2):
    """Answers PENDING at once; the model loads in the background, then READY (or ERROR with the reason)."""
    return answer(Deployment, v2.create_deployment(workspace, body))


@router.get(DEPLOYMENTS)
def list_deployments(workspace: str, v2: V2, query: Listing):
    return answer_page(query, Deployment, v2.list_deployments(workspace))


@router.get(DEPLOYMENTS + "/{name}")
def get_deployment(workspace: str, name: str, v2: V2):
    return answer(Deployment, v2.get_deployment(workspace, name))


@router.get(DEPLOYMENTS + "/{name}/status")
def get_deployment_status(workspace: str, name: str, v2: V2):
    doc = v2.get_deployment(workspace, name)
    return {"status": doc["status"], "status_message": doc["status_message"]}


@router.delete(DEPLOYMENTS + "/{name}")
def delete_deployment(workspace: str, name: str, v2: V2):
    return JSONResponse(answer(Deployment, v2.delete_deployment(workspace, name)), status_code=202)


# ---- providers and model entities


@router.get(workspace_path(MODELS, "{workspace}", "providers", "{name}"))
def get_provider(workspace: str, name: str, v2: V2):
    return answer(ModelProvider, v2.provider(workspace, name))


@router.get(workspace_path(MODELS, "{workspace}", "models", "{name}"))
def get_model_entity(workspace: str, name: str, v2: V2):
    """A model entity this platform holds (a v2 automodel job's output is ``{ws}/{spec.output.name}``)."""
    return answer(ModelEntity, v2.model_entity(workspace, name))


# ---- the inference gateway, per provider


@router.get(PROVIDER + "/ready", dependencies=[Depends(ready_provider)])
def gateway_provider_ready(workspace: str, provider: str):
    return {"status": "ready", "provider": f"{workspace}/{provider}"}


@router.get(PROVIDER + "/-/v1/models", dependencies=[Depends(ready_provider)])
def gateway_provider_models(workspace: str, provider: str, v2: V2, serving: Serving):
    served = set(v2.provider(workspace, provider)["served_models"])
    listing = serving.served_models_list()
    return {**listing, "data": [m for m in listing.get("data", []) if m.get("id") in served]}
