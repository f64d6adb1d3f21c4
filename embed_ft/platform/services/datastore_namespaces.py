"""Data Store namespaces (``/v1/datastore/namespaces``): documents of kind ``datastore_namespace``."""

from __future__ import annotations

import logging
from typing import Any

from ..paths import InvalidPathError, validate_name
from ..store import AlreadyExists, EntityStore
from .errors import ConflictError, NotFoundError
from .repo_store import REPO_TYPES, RepoStore

DATASTORE_NAMESPACE_KIND = "datastore_namespace"
log = logging.getLogger("embed_ft.platform.datastore")


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"namespace": doc["namespace"], "created_at": doc["created_at"], "updated_at": doc["updated_at"]}


class DatastoreNamespaces:
    def __init__(self, store: EntityStore, repos: RepoStore) -> None:
        self.store = store
        self.repos = repos

    def adopt_existing(self) -> list[str]:
        """Register the namespaces that hold repos but have no document (homes of versions that created repos
        without one), so that repo creation can require the namespace; returns them. Runs at start-up."""
        root = self.repos.settings.repos_dir
        try:
            found = {
                d.name
                for plural in REPO_TYPES
                if (root / plural).is_dir()
                for d in (root / plural).iterdir()
                if d.is_dir() and not d.name.startswith(".")
            }
        except OSError as exc:  # an unreadable folder must not stop the start-up
            log.warning("could not list the Data Store's namespaces under %s: %s", root, exc)
            return []
        adopted = []
        for namespace in sorted(found):
            try:
                validate_name(namespace, "namespace")
            except InvalidPathError:
                continue
            if self.repos.namespace_repos(namespace) and self.store.get(DATASTORE_NAMESPACE_KIND, namespace) is None:
                try:
                    self.store.create(DATASTORE_NAMESPACE_KIND, namespace, {"namespace": namespace})
                    adopted.append(namespace)
                except AlreadyExists:
                    pass
        return adopted

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
        with self.store.atomic():  # no repo is created in it between the check and the delete
            self.get(namespace)
            repos = self.repos.namespace_repos(namespace)
            if repos:
                raise ConflictError(
                    f"Data Store namespace {namespace!r} still holds {len(repos)} repo(s) "
                    f"({', '.join(repos[:5])}); delete them first"
                )
            self.store.delete(DATASTORE_NAMESPACE_KIND, namespace)

    def create_repo(self, repo_type: str, namespace: str, name: str) -> dict[str, Any]:
        """Create a repo in an existing Data Store namespace (404 naming it otherwise, as the Data Store does);
        ``AlreadyExists`` when the repo exists."""
        with self.store.atomic():  # the namespace is not deleted between the check and the create
            if self.store.get(DATASTORE_NAMESPACE_KIND, validate_name(namespace, "namespace")) is None:
                raise NotFoundError(
                    f"Data Store namespace {namespace!r} does not exist; create it first with "
                    "POST /v1/datastore/namespaces (form field namespace)"
                )
            return self.repos.create(repo_type, namespace, name)
