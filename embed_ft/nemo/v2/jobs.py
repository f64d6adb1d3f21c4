"""v2 jobs: retrieve-eval (Evaluator) and automodel (Customizer) job collections, addressed by name.

v2 addresses a job by its name in a workspace, and its lists cannot filter on ``custom_fields`` (Helix 0.8.1
answers 400 "Unknown filter field"). So the name *is* the idempotency lookup: ``{prefix}-{key[:20]}`` for the first
attempt, ``-2``, ``-3``... for resubmissions after a failed or cancelled one. A retry or a second materialization
finds the newest attempt by GETs; a create whose answer was lost is found the same way (never sent twice); a
different job under our name (another key in its ``custom_fields``) is refused, not reused.

The documents handed to the lineage are plain dicts whose ``id`` is the job *name* (the handle every v2 route
takes) and whose ``status`` is the v2 word (`nemo/status.py` reads ``active``/``error``).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import Conflict, NemoAPIError, NemoResponseError
from ..http import ServiceHTTP, outcome_unknown, segment
from .contract import (
    CUSTOMIZATION,
    EVALS,
    AutomodelJobRequest,
    JobResult,
    JobStatusResponse,
    Page,
    Request,
    RetrieveEvalJobRequest,
    workspace_path,
)

IDEMPOTENCY_FIELD = "embed_ft_idempotency_key"
KEY_CHARS = 20
MAX_ATTEMPTS = 50


def job_name(prefix: str, key: str, attempt: int = 1) -> str:
    """The name of attempt ``attempt`` of the job with idempotency ``key`` (a hex digest)."""
    base = f"{prefix}-{key[:KEY_CHARS].lower()}"
    return base if attempt <= 1 else f"{base}-{attempt}"


def failure_text(doc: dict[str, Any]) -> str:
    """A failed v2 job's own explanation: ``error_details`` (message/detail/error), else its status message."""
    details = doc.get("error_details") or {}
    if isinstance(details, dict):
        for key in ("message", "detail", "error", "error_message"):
            if details.get(key):
                return str(details[key])
        if details:
            return json.dumps(details)[:500]
    status_details = doc.get("status_details") or {}
    for step in doc.get("steps") or []:
        for task in step.get("tasks") or []:
            if task.get("error_stack") or task.get("error_details"):
                return str((task.get("error_details") or {}).get("message") or task.get("error_stack"))[-500:]
    return str(status_details.get("message") or "no detail reported")


class JobCollection:
    """One kind of v2 job (``retrieve-eval``, ``automodel``) in one workspace."""

    def __init__(
        self, http: ServiceHTTP, service: str, collection: str, workspace: str, prefix: str, request_type: type[Request]
    ) -> None:
        self.http = http
        self.what = f"{collection.split('/')[0]} job"
        self.path = workspace_path(service, segment(workspace), collection)
        self.workspace = workspace
        self.prefix = prefix
        self.request_type = request_type

    def _doc(self, raw: Any) -> dict[str, Any]:
        status = JobStatusResponse.model_validate(raw)
        return {**status.model_dump(), "id": status.name, "job_id": status.id}

    def get(self, name: str) -> dict[str, Any]:
        """The job and its status (``GET .../{name}/status`` carries steps and error details)."""
        return self._doc(self.http.get(f"{self.path}/{segment(name)}/status", call=f"get {self.what} status"))

    def get_or_none(self, name: str) -> dict[str, Any] | None:
        raw = self.http.get_or_none(f"{self.path}/{segment(name)}", call=f"get {self.what}")
        return self._doc(raw) if raw is not None else None

    def _attempts(self, key: str) -> tuple[int, dict[str, Any] | None]:
        """(number of the newest existing attempt, its document) for ``key``; (0, None) when none exists."""
        newest: tuple[int, dict[str, Any] | None] = (0, None)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            doc = self.get_or_none(job_name(self.prefix, key, attempt))
            if doc is None:
                return newest
            owner = (doc.get("custom_fields") or {}).get(IDEMPOTENCY_FIELD)
            if owner != key:
                raise Conflict(
                    self.http.service,
                    f"find {self.what}",
                    409,
                    f"job {doc['id']} exists but belongs to idempotency key {owner!r}, not {key!r}",
                )
            newest = (attempt, doc)
        raise NemoResponseError(f"{MAX_ATTEMPTS} attempts of the {self.what} for key {key[:12]} exist: giving up")

    def find(self, key: str) -> dict[str, Any] | None:
        """The newest job submitted for idempotency ``key`` (with its current status), or None."""
        _attempt, doc = self._attempts(key)
        return self.get(doc["id"]) if doc is not None else None

    def create(self, request: Request, key: str) -> dict[str, Any]:
        """Submit ``request`` (its ``name`` is replaced by the next free attempt's) exactly once."""
        attempt, _ = self._attempts(key)
        name = job_name(self.prefix, key, attempt + 1)
        custom = {**(getattr(request, "custom_fields", None) or {}), IDEMPOTENCY_FIELD: key}
        body = self.request_type.model_validate({**request.body(), "name": name, "custom_fields": custom}).body()
        try:
            raw = self.http.post(self.path, json=body, call=f"create {self.what}")
        except NemoAPIError as exc:
            if exc.status == 409 or outcome_unknown(exc):
                found = self.get_or_none(name)  # it exists (409) or the create went through (lost answer)
                if found is not None and (found.get("custom_fields") or {}).get(IDEMPOTENCY_FIELD) == key:
                    return found
            raise
        return self._doc(raw)

    def cancel(self, name: str) -> dict[str, Any]:
        """Ask the job to stop; one that already ended (400/409/422) is returned as it is."""
        try:
            raw = self.http.post(f"{self.path}/{segment(name)}/cancel", call=f"cancel {self.what}")
            return self._doc(raw) if raw else self.get(name)
        except NemoAPIError as exc:
            if exc.status in (400, 409, 422):
                return self.get(name)
            raise

    def results(self, name: str) -> list[JobResult]:
        body = self.http.get(f"{self.path}/{segment(name)}/results", call=f"list {self.what} results")
        return Page[JobResult].model_validate(body).data

    def download_result(self, name: str, result: str) -> bytes:
        response = self.http.request(
            "GET",
            f"{self.path}/{segment(name)}/results/{segment(result)}/download",
            call=f"download {self.what} result {result}",
        )
        return response.content


def retrieve_eval_jobs(http: ServiceHTTP, workspace: str) -> JobCollection:
    return JobCollection(http, EVALS, "retrieve-eval/jobs", workspace, "embed-ft-eval", RetrieveEvalJobRequest)


def automodel_jobs(http: ServiceHTTP, workspace: str) -> JobCollection:
    return JobCollection(http, CUSTOMIZATION, "automodel/jobs", workspace, "embed-ft-sft", AutomodelJobRequest)
