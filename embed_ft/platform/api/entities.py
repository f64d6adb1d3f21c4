"""Entity Store routes (``{NEMO_URL}/v1/namespaces|datasets|models``).

Lists answer the NeMo shape ``{"data": [...], "pagination": {...}}`` with ``filter[field]=value``,
``sort=[-]field``, ``page``, ``page_size``. Request bodies keep extra fields: NeMo entities carry many optional ones.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from ..services.entities import DATASET_KIND, MODEL_KIND, NAMESPACE_KIND
from .deps import Entities, Listing, Serving, Store, paginate

router = APIRouter()

# Query parameters that only Entity Store model listings carry.
ENTITY_STORE_LIST_PARAMS = ("sort", "page", "page_size")


class NamespaceIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    description: str = ""
    project: str | None = None


class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    description: str = ""
    files_url: str | None = None
    project: str | None = None
    format: str | None = None
    custom_fields: dict[str, Any] = {}


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    description: str = ""
    base_model: str | None = None
    project: str | None = None
    peft: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    artifact: dict[str, Any] | None = None
    custom_fields: dict[str, Any] = {}


# ---- namespaces


@router.post("/v1/namespaces", status_code=201)
def create_namespace(body: NamespaceIn, entities: Entities):
    return entities.create_namespace(body.model_dump())


@router.get("/v1/namespaces")
def list_namespaces(store: Store, query: Listing):
    return paginate(query, store.list(NAMESPACE_KIND))


@router.get("/v1/namespaces/{namespace}")
def get_namespace(namespace: str, entities: Entities):
    return entities.get_namespace(namespace)


@router.delete("/v1/namespaces/{namespace}", status_code=204)
def delete_namespace(namespace: str, entities: Entities):
    entities.delete_namespace(namespace)
    return Response(status_code=204)


# ---- datasets


@router.post("/v1/datasets", status_code=201)
def create_dataset(body: DatasetIn, entities: Entities):
    return entities.create(DATASET_KIND, body.model_dump())


@router.get("/v1/datasets")
def list_datasets(store: Store, query: Listing):
    return paginate(query, store.list(DATASET_KIND))


@router.get("/v1/datasets/{namespace}/{name}")
def get_dataset(namespace: str, name: str, entities: Entities):
    return entities.get(DATASET_KIND, namespace, name)


@router.delete("/v1/datasets/{namespace}/{name}", status_code=204)
def delete_dataset(namespace: str, name: str, entities: Entities):
    entities.delete(DATASET_KIND, namespace, name)
    return Response(status_code=204)


# ---- models


@router.post("/v1/models", status_code=201)
def create_model(body: ModelIn, entities: Entities):
    return entities.create(MODEL_KIND, body.model_dump(exclude_none=True))


def is_nim_models_request(request: Request) -> bool:
    """``GET /v1/models`` is both the Entity Store model list (NEMO_URL) and the NIM model list (NIM_URL), and
    both base URLs are this one port. A request without Entity Store parameters (``filter[...]``, ``sort``,
    ``page``, ``page_size``) is the NIM/OpenAI one: that is what OpenAI clients and NIM readiness polls send."""
    return not any(k.startswith("filter[") or k in ENTITY_STORE_LIST_PARAMS for k in request.query_params.keys())


@router.get("/v1/models")
def list_models(request: Request, store: Store, serving: Serving, query: Listing):
    if is_nim_models_request(request):
        return serving.served_models_list()
    return paginate(query, store.list(MODEL_KIND))


@router.get("/v1/models/{namespace}/{name}")
def get_model(namespace: str, name: str, entities: Entities):
    return entities.get(MODEL_KIND, namespace, name)


@router.delete("/v1/models/{namespace}/{name}", status_code=204)
def delete_model(namespace: str, name: str, entities: Entities):
    entities.delete(MODEL_KIND, namespace, name)
    return Response(status_code=204)
