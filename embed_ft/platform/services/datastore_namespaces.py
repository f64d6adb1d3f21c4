"""Data Store namespaces (``/v1/datastore/namespaces``): documents of kind ``datastore_namespace``."""

from __future__ import annotations

from typing import Any

from ..paths import validate_name
from ..store import AlreadyExists, EntityStore
from .errors import ConflictError, NotFoundError
from .repo_store import RepoStore

DATASTORE_NAMESPACE_KIND = "datastore_namespace"


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"namespace": doc["namespace"], "created_at": doc["created_at"], "updated_at": doc["updated_at"]}


class DatastoreNamespaces:
    def __init__(self, store: EntityStore, repos: RepoStore) -> None:
        self.store = store
        self.repos = repos

    def create(self, namespace: str) -> dict[str, Any]:
        validate_name(namespace, "namespace")
        try:
            doc = self.store.create(DATASTORE_NAMESPACE_KIND, namespace, {"namespace": namespace})
        except AlreadyExists:
            raise ConflictError(f"Data Store namespace {namespace!r} already exists") from None
        return _public(doc)

    def list(self) -> list[dict[str, Any]]:
        return [_public(d) for d in self.store.list(DATASTORE_NAMESPACE_KIND, newest_first=False)]

    def get(self, namespace: str) -> dict[str, Any]:
        validate_name(namespace, "namespace")
        doc = self.store.get(DATASTORE_NAMESPACE_KIND, namespace)
        if doc is None:
            raise NotFoundError(f"Data Store namespace {namespace!r} does not exist")
        return _public(doc)

    def delete(self, namespace: str) -> None:
        """Delete an empty namespace (one that still holds repos is refused)."""
        self.get(namespace)
        repos = self.repos.namespace_repos(namespace)
        if repos:
            raise ConflictError(f"Data Store namespace {namespace!r} still holds {len(repos)} repo(s) "
                                f"({', '.join(repos[:5])}); delete them first")
        self.store.delete(DATASTORE_NAMESPACE_KIND, namespace)
