"""NeMo status vocabularies: the one definition of job and deployment statuses and of reading them from documents.

Jobs (customization, evaluation) go created -> pending -> running (-> cancelling) and end only at completed, failed
or cancelled (NeMo's v1 contract). v2 (NeMo Platform / nemo-helix) jobs say ``active`` for running, may be ``paused``
(``pausing``, ``resuming``) and end at completed, ``error`` (read as failed) or cancelled. Deployments are pending
until ready, or end failed; v2 writes deployment statuses in upper case (``READY``, ``ERROR``, ``LOST``), hence
`normalize_status` everywhere.
"""

from __future__ import annotations

from typing import Any

# Jobs.
CREATED, PENDING, RUNNING, CANCELLING = "created", "pending", "running", "cancelling"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
# v2 only: a running job is "active"; a paused one is still the same job (waited on, reattached to).
ACTIVE, PAUSED, PAUSING, RESUMING = "active", "paused", "pausing", "resuming"
ERROR = "error"  # v2's failed
ACTIVE_JOB_STATUSES = frozenset({CREATED, PENDING, RUNNING, CANCELLING, ACTIVE, PAUSED, PAUSING, RESUMING})
TERMINAL_JOB_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})
_JOB_STATUS_ALIASES = {ERROR: FAILED}

# Deployments.
READY = "ready"
DEPLOYMENT_READY_STATUSES = frozenset({READY})
DEPLOYMENT_FAILED_STATUSES = frozenset({FAILED, CANCELLED, "error", "lost", "deleted", "terminated"})


def normalize_status(value: Any) -> str:
    """A status as a lower-case string (``"READY"`` -> ``"ready"``); missing or blank -> ``"unknown"``."""
    if value is None:
        return "unknown"
    text = str(value).strip().lower()
    return text or "unknown"


def job_status(doc: Any) -> str:
    """The normalized ``status`` of a job document (customization or evaluation); ``error`` reads as failed."""
    status = normalize_status(doc.get("status") if isinstance(doc, dict) else None)
    return _JOB_STATUS_ALIASES.get(status, status)


def is_terminal(status_or_doc: Any) -> bool:
    """Whether a job (its document, or its status) has ended: completed, failed or cancelled."""
    if isinstance(status_or_doc, dict):
        status = job_status(status_or_doc)
    else:
        status = normalize_status(status_or_doc)
        status = _JOB_STATUS_ALIASES.get(status, status)
    return status in TERMINAL_JOB_STATUSES


def is_active(doc: Any) -> bool:
    """Whether a job document is still queued or running (a later wait can reattach to it)."""
    return job_status(doc) in ACTIVE_JOB_STATUSES


def deployment_status(doc: Any) -> str:
    """``status_details.status`` (or ``status``) of a deployment document, normalized; ``"unknown"`` if absent."""
    if not isinstance(doc, dict):
        return "unknown"
    details = doc.get("status_details")
    if isinstance(details, dict) and details.get("status"):
        return normalize_status(details["status"])
    return normalize_status(doc.get("status"))


def is_ready(doc: Any) -> bool:
    return deployment_status(doc) in DEPLOYMENT_READY_STATUSES


def is_failed(doc: Any) -> bool:
    return deployment_status(doc) in DEPLOYMENT_FAILED_STATUSES


def deployed_model(doc: Any) -> str | None:
    """The model a deployment serves, wherever the server version puts it: inline ``config.model``, top-level
    ``model``, or the first of ``models`` (a name, or an object with ``name``/``id``)."""
    if not isinstance(doc, dict):
        return None
    config = doc.get("config")
    if isinstance(config, dict) and isinstance(model := config.get("model"), str) and model:
        return model
    if isinstance(model := doc.get("model"), str) and model:
        return model
    models = doc.get("models")
    if isinstance(models, list) and models:
        first = models[0]
        if isinstance(first, str):
            return first
        if isinstance(first, dict):
            return first.get("name") or first.get("id")
    return None
