"""Entity Store: namespaces, dataset registrations and models.

Documents live in the ``EntityStore`` under kinds ``namespace`` (id ``ns``), ``dataset`` and ``model`` (id
``ns/name``; model names may carry ``@version`` / ``@cust-...``). Names are checked with ``validate_name``; an
unsafe one raises ``InvalidPathError`` (answered 400). Other services register models with ``register_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..paths import validate_name
from ..store import AlreadyExists, EntityStore, new_id
from .errors import ConflictError, NotFoundError

NAMESPACE_KIND = "namespace"
DATASET_KIND = "dataset"
MODEL_KIND = "model"


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


class EntitiesService:
    """Create, read, list and delete the Entity Store's namespaces, datasets and models."""

    def __init__(self, store: EntityStore) -> None:
        self.store = store

    # ---- namespaces

    def create_namespace(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = validate_name(body["id"], "namespace id")
        try:
            return self.store.create(NAMESPACE_KIND, namespace, body)
        except AlreadyExists:
            raise ConflictError(f"namespace {namespace!r} already exists") from None

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        validate_name(namespace, "namespace")
        doc = self.store.get(NAMESPACE_KIND, namespace)
        if doc is None:
            raise NotFoundError(f"namespace {namespace!r} does not exist; create it with POST /v1/namespaces")
        return doc

    def delete_namespace(self, namespace: str) -> None:
        self.get_namespace(namespace)
        self.store.delete(NAMESPACE_KIND, namespace)

    # ---- datasets and models (documents keyed ns/name in an existing namespace)

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a dataset or model document from a request body (``namespace``, ``name`` and its fields)."""
        validate_name(body["name"], f"{kind} name")
        self.get_namespace(body["namespace"])
        key = f"{body['namespace']}/{body['name']}"
        try:
            return self.store.create(kind, key, {"id": new_id(kind), **body})
        except AlreadyExists:
            raise ConflictError(f"{kind} {key} already exists") from None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        validate_name(namespace, "namespace")
        validate_name(name, f"{kind} name")
        doc = self.store.get(kind, f"{namespace}/{name}")
        if doc is None:
            raise NotFoundError(f"{kind} {namespace}/{name} does not exist")
        return doc

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.get(kind, namespace, name)
        self.store.delete(kind, f"{namespace}/{name}")
