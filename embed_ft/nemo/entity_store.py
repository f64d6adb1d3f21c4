"""Entity Store client: namespaces, dataset registrations and models (``{NEMO_URL}/v1/...``)."""

from __future__ import annotations

import logging
from typing import Any

from .errors import Conflict, NemoAPIError, checked_answer
from .http import CreateResult, ServiceHTTP, create_or_fetch, outcome_unknown, segment
from .v1.contract import Dataset, DatasetRequest, Model, Namespace, NamespaceRequest

log = logging.getLogger("embed_ft.nemo")


class EntityStoreClient:
    def __init__(self, http: ServiceHTTP) -> None:
        self.http = http

    # Namespaces
    def ensure_namespace(self, namespace: str) -> bool:
        """Create the namespace if needed; True if this call created it.

        409 means it exists. 422 is also what some versions answer for "exists", but it is a validation
        error too (a bad name), so a 422 counts as "exists" only if the namespace can then be read.
        """
        try:
            self.http.post("/v1/namespaces", json=NamespaceRequest(id=namespace).body(), call="create namespace")
            return True
        except NemoAPIError as exc:
            if exc.status == 409:
                return False
            if exc.status == 422 or outcome_unknown(exc):
                if self.get_namespace(namespace) is not None:
                    return outcome_unknown(exc)
            raise

    def get_namespace(self, namespace: str) -> dict[str, Any] | None:
        """The namespace document, or None if it does not exist."""
        doc = self.http.get_or_none(f"/v1/namespaces/{segment(namespace)}")
        return None if doc is None else checked_answer(Namespace, doc, "Entity Store: get namespace")

    # Datasets
    def create_dataset(
        self, name: str, namespace: str, files_url: str, description: str = "", project: str | None = None
    ) -> CreateResult:
        """Register a dataset (tutorial body). Existing (409) -> the existing registration, ``created=False``.

        An existing registration that points at different files raises :class:`Conflict` naming both URLs:
        silently training on other files would be worse than stopping.
        """
        request = DatasetRequest(name=name, namespace=namespace, description=description, files_url=files_url)
        if project is not None:
            request.project = project
        body = request.body()
        result = create_or_fetch(
            lambda: self.http.post("/v1/datasets", json=body, call="register dataset"),
            lambda: self.get_dataset(namespace, name),
            what=f"dataset {namespace}/{name}",
        )
        existing_url = result.get("files_url")
        if not result.created and existing_url and existing_url != files_url:
            raise Conflict(
                "Entity Store",
                f"POST /v1/datasets (register dataset {namespace}/{name})",
                409,
                f"dataset {namespace}/{name} is already registered with files_url {existing_url!r}, "
                f"not {files_url!r}; delete it or choose another dataset name",
            )
        return result

    def get_dataset(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The dataset registration, or None if there is none."""
        doc = self.http.get_or_none(f"/v1/datasets/{segment(namespace)}/{segment(name)}")
        return None if doc is None else checked_answer(Dataset, doc, "Entity Store: get dataset")

    def delete_dataset(self, namespace: str, name: str) -> bool:
        """Delete the registration; False if there was none."""
        return self._delete(f"/v1/datasets/{segment(namespace)}/{segment(name)}")

    # Models
    def list_models(
        self, namespace: str | None = None, sort: str = "-created_at", page_size: int = 100
    ) -> list[dict[str, Any]]:
        """All models (of ``namespace``), following pagination."""
        params: dict[str, Any] = {"sort": sort}
        if namespace:
            params["filter[namespace]"] = namespace
        return list(self.http.iter_pages("/v1/models", params=params, page_size=page_size, call="list models"))

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The model (``name`` may carry a version, ``x@cust-...``), or None if it does not exist."""
        doc = self.http.get_or_none(f"/v1/models/{segment(namespace)}/{segment(name)}")
        return None if doc is None else checked_answer(Model, doc, "Entity Store: get model")

    def delete_model(self, namespace: str, name: str) -> bool:
        return self._delete(f"/v1/models/{segment(namespace)}/{segment(name)}")

    def _delete(self, path: str) -> bool:
        try:
            self.http.delete(path)
            return True
        except NemoAPIError as exc:
            if exc.status == 404:
                return False
            raise
