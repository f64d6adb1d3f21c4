"""Deployment Management routes (``{NEMO_URL}/v1/deployment/...``).

Creating a deployment that exists answers **500**, replicating the documented quirk of the real Deployment
Management service so that clients written against this platform handle it. Bodies are the v1 contract's
(``nemo/v1/contract.py``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...nemo.v1.contract import DeploymentConfigRequest, ModelDeploymentRequest
from ..services.deployments import CONFIG_KIND, DEPLOYMENT_KIND, DeploymentExists
from .deps import Deployments, Listing, Store, paginate

router = APIRouter()


# ---- configs


@router.post("/v1/deployment/configs")
def create_deployment_config(body: DeploymentConfigRequest, deployments: Deployments):
    return deployments.create_config(body.model_dump(exclude_none=True))


@router.get("/v1/deployment/configs")
def list_deployment_configs(store: Store, query: Listing):
    return paginate(query, store.list(CONFIG_KIND))


@router.get("/v1/deployment/configs/{namespace}/{name}")
def get_deployment_config(namespace: str, name: str, deployments: Deployments):
    return deployments.get_config(f"{namespace}/{name}")


@router.delete("/v1/deployment/configs/{namespace}/{name}")
def delete_deployment_config(namespace: str, name: str, deployments: Deployments):
    deployments.delete_config(f"{namespace}/{name}")
    return {"message": f"deployment config {namespace}/{name} deleted"}


# ---- deployments


@router.post("/v1/deployment/model-deployments")
def create_model_deployment(body: ModelDeploymentRequest, deployments: Deployments):
    try:
        return deployments.create_deployment(body.model_dump(exclude_none=True))
    except DeploymentExists as exc:
        # The real service answers 500 here; clients must treat it as "exists".
        return JSONResponse({"detail": str(exc)}, status_code=500)


@router.get("/v1/deployment/model-deployments")
def list_model_deployments(store: Store, query: Listing):
    return paginate(query, store.list(DEPLOYMENT_KIND))


@router.get("/v1/deployment/model-deployments/{namespace}/{name}")
def get_model_deployment(namespace: str, name: str, deployments: Deployments):
    return deployments.get_deployment(f"{namespace}/{name}")


@router.delete("/v1/deployment/model-deployments/{namespace}/{name}")
def delete_model_deployment(namespace: str, name: str, deployments: Deployments):
    doc = deployments.delete_deployment(f"{namespace}/{name}")
    return {
        "message": f"model deployment {namespace}/{name} deleted; {doc['model']} is no longer served",
        "id": doc["id"],
    }
