"""Deployment Management (``{NEMO_URL}/v1/deployment/...``): serve a model on the NIM routes of this platform.

Store kinds ``deployment_config`` and ``model_deployment`` (id ``ns/name``). Creating a deployment answers at
once with status ``pending``; a background thread resolves the model (Entity Store model or customization
target), loads it, and registers it with the NIM registry under its unversioned name: then ``ready``. A model
that cannot be resolved or loaded makes the deployment ``failed`` with a description naming it (as on a
cluster, where the NIM pod fails after the create call succeeded). Deleting a deployment undeploys it.

Creating a deployment that exists answers **500**, replicating the documented quirk of the real Deployment
Management service so that clients written against this platform handle it.
Deployments that were ready when the platform stopped are loaded again at start-up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from .. import models
from .shared import checked_name as _checked
from .shared import request_ctx as _ctx
from ..store import AlreadyExists, new_id
from . import nim
from .entities import paginated_list

log = logging.getLogger("embed_ft.platform.deployment")

router = APIRouter()

CONFIG_KIND = "deployment_config"
DEPLOYMENT_KIND = "model_deployment"
LORA_HINT = "the embedding NIM has no LoRA support: set nim_deployment.disable_lora_support to true"


class DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    nim_deployment: dict[str, Any] | None = None


class DeploymentConfigIn(DeploymentSpec):
    name: str
    namespace: str
    description: str | None = None
    project: str | None = None


class ModelDeploymentIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    config: str | DeploymentSpec
    description: str | None = None
    project: str | None = None


def _check_spec(spec: DeploymentSpec) -> None:
    try:
        models.split_model_ref(spec.model)
    except models.ModelNotFound as exc:
        raise HTTPException(422, str(exc)) from exc
    if spec.nim_deployment is not None and spec.nim_deployment.get("disable_lora_support") is False:
        raise HTTPException(422, LORA_HINT)


# --------------------------------------------------------------------------------------------- configs


@router.post("/v1/deployment/configs")
def create_deployment_config(body: DeploymentConfigIn, request: Request):
    namespace, name = _checked(body.namespace, "namespace"), _checked(body.name, "deployment config name")
    _check_spec(body)
    doc = {**body.model_dump(exclude_none=True), "id": new_id("deployment_config")}
    try:
        return _ctx(request).store.create(CONFIG_KIND, f"{namespace}/{name}", doc)
    except AlreadyExists:
        raise HTTPException(409, f"deployment config {namespace}/{name} already exists") from None


@router.get("/v1/deployment/configs")
def list_deployment_configs(request: Request):
    return paginated_list(request, _ctx(request).store.list(CONFIG_KIND))


@router.get("/v1/deployment/configs/{namespace}/{name}")
def get_deployment_config(namespace: str, name: str, request: Request):
    doc = _ctx(request).store.get(CONFIG_KIND, f"{namespace}/{name}")
    if doc is None:
        raise HTTPException(404, f"deployment config {namespace}/{name} not found")
    return doc


@router.delete("/v1/deployment/configs/{namespace}/{name}")
def delete_deployment_config(namespace: str, name: str, request: Request):
    if not _ctx(request).store.delete(CONFIG_KIND, f"{namespace}/{name}"):
        raise HTTPException(404, f"deployment config {namespace}/{name} not found")
    return {"message": f"deployment config {namespace}/{name} deleted"}


# ----------------------------------------------------------------------------------------- deployments


def _set_status(ctx, deployment_key: str, deployment_id: str, status: str, description: str, **extra: Any) -> None:
    """Update the deployment unless it was deleted (or replaced) meanwhile."""
    with _status_lock:
        doc = ctx.store.get(DEPLOYMENT_KIND, deployment_key)
        if doc is None or doc.get("id") != deployment_id:
            return
        ctx.store.update(DEPLOYMENT_KIND, deployment_key, {
            "status_details": {"status": status, "description": description}, **extra,
        })


_status_lock = threading.Lock()


def _load_deployment(ctx, deployment_key: str, deployment_id: str, model_ref: str) -> None:
    served_name = models.unversioned(model_ref)
    try:
        path = models.resolve_model_path(ctx, model_ref)
        model = models.load_model(path)
    except Exception as exc:  # unknown model, broken weights, out of memory: the deployment says which
        log.warning("deployment %s failed: %s", deployment_key, exc)
        _set_status(ctx, deployment_key, deployment_id, "failed",
                    f"model {model_ref} cannot be deployed: {exc}", deployed=False)
        return
    with _status_lock:
        doc = ctx.store.get(DEPLOYMENT_KIND, deployment_key)
        if doc is None or doc.get("id") != deployment_id:
            return  # deleted while loading: serve nothing
        nim.registry(ctx).add(nim.ServedModel(served_name, model_ref, path, deployment_id, model))
        ctx.store.update(DEPLOYMENT_KIND, deployment_key, {
            "status_details": {"status": "ready",
                               "description": f"{model_ref} is served as {served_name!r} on /v1/embeddings"},
            "deployed": True,
        })


def _start_loading(ctx, doc: dict[str, Any]) -> None:
    key = f"{doc['namespace']}/{doc['name']}"
    threading.Thread(target=_load_deployment, args=(ctx, key, doc["id"], doc["model"]), daemon=True,
                     name=f"deploy-{key}").start()


@router.post("/v1/deployment/model-deployments")
def create_model_deployment(body: ModelDeploymentIn, request: Request):
    ctx = _ctx(request)
    namespace, name = _checked(body.namespace, "namespace"), _checked(body.name, "deployment name")
    key = f"{namespace}/{name}"
    if ctx.store.get(DEPLOYMENT_KIND, key) is not None:
        # The real service answers 500 here (nemo-api.md §6); clients must treat it as "exists".
        return JSONResponse({"detail": f"model deployment {key} already exists"}, status_code=500)
    if isinstance(body.config, str):
        config = ctx.store.get(CONFIG_KIND, body.config)
        if config is None:
            raise HTTPException(404, f"deployment config {body.config} not found; create it with POST /v1/deployment/configs")
        spec = DeploymentSpec(**{k: v for k, v in config.items() if k in ("model", "nim_deployment")})
    else:
        spec = body.config
    _check_spec(spec)
    served_name = models.unversioned(spec.model)
    doc = {
        **body.model_dump(exclude_none=True),
        "id": new_id("deployment"),
        "namespace": namespace,
        "name": name,
        "config": body.config if isinstance(body.config, str) else spec.model_dump(exclude_none=True),
        "model": spec.model,
        "models": [served_name],
        "url": ctx.settings.base_url,
        "deployed": False,
        "async_enabled": False,
        "status_details": {"status": "pending", "description": f"loading {spec.model}"},
    }
    try:
        doc = ctx.store.create(DEPLOYMENT_KIND, key, doc)
    except AlreadyExists:  # lost a race with an identical request
        return JSONResponse({"detail": f"model deployment {key} already exists"}, status_code=500)
    _start_loading(ctx, doc)
    return doc


@router.get("/v1/deployment/model-deployments")
def list_model_deployments(request: Request):
    return paginated_list(request, _ctx(request).store.list(DEPLOYMENT_KIND))


@router.get("/v1/deployment/model-deployments/{namespace}/{name}")
def get_model_deployment(namespace: str, name: str, request: Request):
    doc = _ctx(request).store.get(DEPLOYMENT_KIND, f"{namespace}/{name}")
    if doc is None:
        raise HTTPException(404, f"model deployment {namespace}/{name} not found")
    return doc


@router.delete("/v1/deployment/model-deployments/{namespace}/{name}")
def delete_model_deployment(namespace: str, name: str, request: Request):
    ctx = _ctx(request)
    key = f"{namespace}/{name}"
    with _status_lock:
        doc = ctx.store.get(DEPLOYMENT_KIND, key)
        if doc is None:
            raise HTTPException(404, f"model deployment {key} not found")
        ctx.store.delete(DEPLOYMENT_KIND, key)
        nim.registry(ctx).remove_deployment(doc["id"])
    return {"message": f"model deployment {key} deleted; {doc['model']} is no longer served", "id": doc["id"]}


def on_startup(ctx) -> None:
    """Serve again what was deployed before the platform stopped (a cluster keeps its NIMs running)."""
    for doc in ctx.store.list(DEPLOYMENT_KIND):
        if (doc.get("status_details") or {}).get("status") in ("ready", "pending"):
            ctx.store.update(DEPLOYMENT_KIND, f"{doc['namespace']}/{doc['name']}", {
                "status_details": {"status": "pending", "description": f"loading {doc['model']} after a restart"},
                "deployed": False,
            })
            _start_loading(ctx, doc)
