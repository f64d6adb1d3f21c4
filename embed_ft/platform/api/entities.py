"""Entity Store routes (``{NEMO_URL}/v1/namespaces|datasets|models``).

Lists answer the NeMo shape ``{"data": [...], "pagination": {...}}`` with ``filter[field]=value``,
``sort=[-]field``, ``page``, ``page_size``. Request bodies are the v1 contract's (``nemo/v1/contract.py``); they keep
extra fields: NeMo entities carry many optional ones.
"""

from __future__ import annotations

from fastapi import APIRouter

from ...nemo.v1.contract import DatasetRequest, ModelRequest, NamespaceRequest
from ..services.entities import DATASET_KIND, MODEL_KIND, NAMESPACE_KIND
from ..store import utc_now
from .deps import Entities, Listing, Store, paginate

router = APIRouter()


# ---- namespaces


@router.post("/v1/namespaces", status_code=201)
def create_namespace(body: NamespaceRequest, entities: Entities):
    return entities.create_namespace(body.model_dump())


@router.get("/v1/namespaces")
def list_namespaces(store: Store, query: Listing):
    return paginate(query, store.list(NAMESPACE_KIND), {"namespace": "id"})


@router.get("/v1/namespaces/{namespace}")
def get_namespace(namespace: str, entities: Entities):
    return entities.get_namespace(namespace)


def deleted(what: str, key: str) -> dict[str, str]:
    """NeMo's ``DeleteResponse`` (what the SDK parses a delete's answer into)."""
    return {"id": key, "deleted_at": utc_now(), "message": f"{what} {key} deleted"}


@router.delete("/v1/namespaces/{namespace}")
def delete_namespace(namespace: str, entities: Entities):
    entities.delete_namespace(namespace)
    return deleted("namespace", namespace)


# ---- datasets


@router.post("/v1/datasets", status_code=201)
def create_dataset(body: DatasetRequest, entities: Entities):
    return entities.create(DATASET_KIND, body.model_dump())


@router.get("/v1/datasets")
def list_datasets(store: Store, query: Listing):
    return paginate(query, store.list(DATASET_KIND))


@router.get("/v1/datasets/{namespace}/{name}")
def get_dataset(namespace: str, name: str, entities: Entities):
    return entities.get(DATASET_KIND, namespace, name)


@router.delete("/v1/datasets/{namespace}/{name}")
def delete_dataset(namespace: str, name: str, entities: Entities):
    entities.delete(DATASET_KIND, namespace, name)
    return deleted("dataset", f"{namespace}/{name}")


# ---- models


@router.post("/v1/models", status_code=201)
def create_model(body: ModelRequest, entities: Entities):
    return entities.create(MODEL_KIND, body.model_dump(exclude_none=True))


@router.get("/v1/models")
def list_models(store: Store, query: Listing):
    """The Entity Store's models (the NIM's served models are ``{NIM_URL}/v1/models``, api/nim.py)."""
    return paginate(query, store.list(MODEL_KIND))


@router.get("/v1/models/{namespace}/{name}")
def get_model(namespace: str, name: str, entities: Entities):
    return entities.get(MODEL_KIND, namespace, name)


@router.delete("/v1/models/{namespace}/{name}")
def delete_model(namespace: str, name: str, entities: Entities):
    entities.delete(MODEL_KIND, namespace, name)
    return deleted("model", f"{namespace}/{name}")
