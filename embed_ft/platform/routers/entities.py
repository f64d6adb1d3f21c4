"""Entity Store: namespaces, dataset registrations and models (``{NEMO_URL}/v1/namespaces|datasets|models``).

Documents live in the ``EntityStore`` under kinds ``namespace`` (id ``ns``), ``dataset`` and ``model``
(id ``ns/name``; model names may carry ``@version`` / ``@cust-...``). Lists answer the NeMo shape
``{"data": [...], "pagination": {...}}`` with ``filter[field]=value``, ``sort=[-]field``, ``page``, ``page_size``.

Other platform modules register models in-process with ``register_model`` and read them with ``get_model``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict

from ..paths import validate_name
from .shared import checked_name
from ..store import AlreadyExists, EntityStore, new_id

router = APIRouter()

NAMESPACE_KIND = "namespace"
DATASET_KIND = "dataset"
MODEL_KIND = "model"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000


# --------------------------------------------------------------------------------------------------------------
# In-process API for the other platform modules
# --------------------------------------------------------------------------------------------------------------


def ensure_namespace(store: EntityStore, namespace: str, description: str = "") -> dict[str, Any]:
    """The namespace document, created when missing (idempotent)."""
    validate_name(namespace, "namespace")
    existing = store.get(NAMESPACE_KIND, namespace)
    if existing is not None:
        return existing
    try:
        return store.create(NAMESPACE_KIND, namespace, {"id": namespace, "description": description})
    except AlreadyExists:
        return store.get(NAMESPACE_KIND, namespace)  # type: ignore[return-value]


def register_model(
    store: EntityStore, namespace: str, name: str, base_model: str | None, artifact_path: Path | str, **extra: Any
) -> dict[str, Any]:
    """Register (or replace) the Entity Store model ``namespace/name`` whose weights are the folder ``artifact_path``.

    Creates the namespace if needed. Re-registering keeps the original ``id`` and ``created_at``.
    ``extra`` fields (``description``, ``peft``, ``spec``, ``custom_fields``, ...) are stored as given.
    """
    validate_name(namespace, "namespace")
    validate_name(name, "model name")
    ensure_namespace(store, namespace)
    artifact_path = Path(artifact_path).resolve()
    model_id = f"{namespace}/{name}"
    existing = store.get(MODEL_KIND, model_id) or {}
    doc: dict[str, Any] = {
        "id": existing.get("id") or new_id("model"),
        "namespace": namespace,
        "name": name,
        "base_model": base_model,
        "description": "",
        "peft": {"finetuning_type": "all_weights"},
        "custom_fields": {},
        **extra,
        "artifact": {"files_url": artifact_path.as_uri(), "status": "upload_completed", "backend_engine": "local"},
        "artifact_path": str(artifact_path),
    }
    if existing.get("created_at"):
        doc["created_at"] = existing["created_at"]
    return store.put(MODEL_KIND, model_id, doc)


def get_model(store: EntityStore, namespace: str, name: str) -> dict[str, Any] | None:
    """The model document ``namespace/name`` (name may carry ``@...``), or None."""
    return store.get(MODEL_KIND, f"{namespace}/{name}")


# --------------------------------------------------------------------------------------------------------------
# Request bodies (extra fields are kept: NeMo entities carry many optional ones)
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------


def _store(request: Request) -> EntityStore:
    return request.app.state.ctx.store


def _checked(value: str, what: str) -> str:
    return checked_name(value, what, status=400)


def _require_namespace(store: EntityStore, namespace: str) -> dict[str, Any]:
    _checked(namespace, "namespace")
    doc = store.get(NAMESPACE_KIND, namespace)
    if doc is None:
        raise HTTPException(404, f"namespace {namespace!r} does not exist; create it with POST /v1/namespaces")
    return doc


def _field(doc: dict, dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _matches(doc: dict, filters: dict[str, str]) -> bool:
    for field, wanted in filters.items():
        value = _field(doc, field)
        if isinstance(value, bool):
            value = str(value).lower()
        if value is None or str(value) != wanted:
            return False
    return True


def _sort_key(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def paginated_list(request: Request, docs: list[dict]) -> dict[str, Any]:
    """Apply ``filter[field]=value`` (dotted fields allowed), ``sort=[-]field``, ``page`` and ``page_size``."""
    params = request.query_params
    filters = {key[len("filter["):-1]: value for key, value in params.multi_items()
               if key.startswith("filter[") and key.endswith("]")}
    docs = [d for d in docs if _matches(d, filters)]
    sort = params.get("sort") or "-created_at"
    field, descending = sort.lstrip("-"), sort.startswith("-")
    present = [d for d in docs if _field(d, field) is not None]
    present.sort(key=lambda d: _sort_key(_field(d, field)), reverse=descending)
    docs = present + [d for d in docs if _field(d, field) is None]  # documents without the field go last
    try:
        page = int(params.get("page") or 1)
        page_size = int(params.get("page_size") or DEFAULT_PAGE_SIZE)
    except ValueError as exc:
        raise HTTPException(422, f"page and page_size must be integers: {exc}") from exc
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise HTTPException(422, f"page must be >= 1 and page_size within 1..{MAX_PAGE_SIZE}")
    chunk = docs[(page - 1) * page_size: page * page_size]
    return {
        "object": "list",
        "data": chunk,
        "pagination": {
            "page": page,
            "page_size": page_size,
            "current_page_size": len(chunk),
            "total_pages": max(1, math.ceil(len(docs) / page_size)),
            "total_results": len(docs),
        },
        "sort": sort,
        "filter": filters,
    }


# --------------------------------------------------------------------------------------------------------------
# Namespaces
# --------------------------------------------------------------------------------------------------------------


@router.post("/v1/namespaces", status_code=201)
def create_namespace(body: NamespaceIn, request: Request):
    _checked(body.id, "namespace id")
    try:
        return _store(request).create(NAMESPACE_KIND, body.id, body.model_dump())
    except AlreadyExists as exc:
        raise HTTPException(409, f"namespace {body.id!r} already exists") from exc


@router.get("/v1/namespaces")
def list_namespaces(request: Request):
    return paginated_list(request, _store(request).list(NAMESPACE_KIND))


@router.get("/v1/namespaces/{namespace}")
def get_namespace(namespace: str, request: Request):
    return _require_namespace(_store(request), namespace)


@router.delete("/v1/namespaces/{namespace}", status_code=204)
def delete_namespace(namespace: str, request: Request):
    store = _store(request)
    _require_namespace(store, namespace)
    store.delete(NAMESPACE_KIND, namespace)
    return Response(status_code=204)


# --------------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------------


@router.post("/v1/datasets", status_code=201)
def create_dataset(body: DatasetIn, request: Request):
    store = _store(request)
    _checked(body.name, "dataset name")
    _require_namespace(store, body.namespace)
    doc = {"id": new_id("dataset"), **body.model_dump()}
    try:
        return store.create(DATASET_KIND, f"{body.namespace}/{body.name}", doc)
    except AlreadyExists as exc:
        raise HTTPException(409, f"dataset {body.namespace}/{body.name} already exists") from exc


@router.get("/v1/datasets")
def list_datasets(request: Request):
    return paginated_list(request, _store(request).list(DATASET_KIND))


def _require_entity(store: EntityStore, kind: str, namespace: str, name: str) -> dict[str, Any]:
    _checked(namespace, "namespace")
    _checked(name, f"{kind} name")
    doc = store.get(kind, f"{namespace}/{name}")
    if doc is None:
        raise HTTPException(404, f"{kind} {namespace}/{name} does not exist")
    return doc


@router.get("/v1/datasets/{namespace}/{name}")
def get_dataset(namespace: str, name: str, request: Request):
    return _require_entity(_store(request), DATASET_KIND, namespace, name)


@router.delete("/v1/datasets/{namespace}/{name}", status_code=204)
def delete_dataset(namespace: str, name: str, request: Request):
    store = _store(request)
    _require_entity(store, DATASET_KIND, namespace, name)
    store.delete(DATASET_KIND, f"{namespace}/{name}")
    return Response(status_code=204)


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


@router.post("/v1/models", status_code=201)
def create_model(body: ModelIn, request: Request):
    store = _store(request)
    _checked(body.name, "model name")
    _require_namespace(store, body.namespace)
    doc = {"id": new_id("model"), **body.model_dump(exclude_none=True)}
    try:
        return store.create(MODEL_KIND, f"{body.namespace}/{body.name}", doc)
    except AlreadyExists as exc:
        raise HTTPException(409, f"model {body.namespace}/{body.name} already exists") from exc


@router.get("/v1/models")
def list_models(request: Request):
    # One port serves NEMO_URL and NIM_URL, so GET /v1/models is also the NIM/OpenAI list of served models.
    # nim.py decides which was meant (Entity Store listings carry filter[...]/sort/page parameters).
    from . import nim

    if nim.is_nim_models_request(request):
        return nim.served_models_list(request.app.state.ctx)
    return paginated_list(request, _store(request).list(MODEL_KIND))


@router.get("/v1/models/{namespace}/{name}")
def get_model_route(namespace: str, name: str, request: Request):
    return _require_entity(_store(request), MODEL_KIND, namespace, name)


@router.delete("/v1/models/{namespace}/{name}", status_code=204)
def delete_model(namespace: str, name: str, request: Request):
    store = _store(request)
    _require_entity(store, MODEL_KIND, namespace, name)
    store.delete(MODEL_KIND, f"{namespace}/{name}")
    return Response(status_code=204)
