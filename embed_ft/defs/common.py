"""Helpers shared by the asset modules: backend errors as failures, idempotency keys, names, tables."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Callable

from dagster import Failure, MetadataValue

from ..nemo.errors import NemoConnectionError, NemoError, ServerError

OWNERS = ["team:embed-ft"]
CPU_TAGS = {"compute": "cpu"}
GPU_TAGS = {"compute": "gpu"}  # stages that hold a GPU on a NeMo cluster (training, NIMs, evaluations)

# Backend errors worth a retry of the step: a 5xx the client's own retries did not outlast, no answer at all.
TRANSIENT_BACKEND_ERRORS = (ServerError, NemoConnectionError)


def backend_errors_as_failures(fn: Callable) -> Callable:
    """Turn a NeMo client error (which already names the service, call, URL/status and server message, secrets
    redacted) into a Dagster ``Failure``: the UI then shows that one line instead of a wrapped stack trace. Only a
    transient one may be retried by the asset's `RetryPolicy` (`remote_jobs.REMOTE_JOB_RETRY_POLICY`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NemoError as exc:
            raise Failure(str(exc), allow_retries=isinstance(exc, TRANSIENT_BACKEND_ERRORS)) from None

    return wrapper


def stable_hash(*parts: Any) -> str:
    """sha256 of a canonical JSON rendering: the same inputs give the same key on every machine."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def link(base_url: str, path: str):
    """A clickable `MetadataValue.url` to where an object lives on its NeMo service (``path`` starts with /v1)."""
    return MetadataValue.url(f"{base_url.rstrip('/')}{path}")


def table_cell(value: Any, digits: int = 4) -> Any:
    """A `TableRecord` value the UI can show: floats rounded, NaN/inf as empty (JSON has no NaN)."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    return value


def evaluation_metadata(
    job_id: str,
    job_url: Any,
    results_url: Any,
    model: str,
    wait_s: float,
    tasks: Any,
    per_query: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]],
    queries: Mapping[str, int],
) -> dict[str, Any]:
    """An evaluation asset's metadata, the same on both API generations: the job, its scores as stable float keys
    (``TASK/METRIC``) and each task's query count (``TASK/queries``)."""
    metadata: dict[str, Any] = {
        "job_id": job_id,
        "job_url": job_url,
        "results_url": results_url,
        "model": model,
        "wait_s": float(wait_s),
        "tasks": MetadataValue.json(tasks),
        "per_query_scores": "reported" if per_query else "not reported by the evaluator",
    }
    for task, scores in metrics.items():
        for metric, score in scores.items():
            metadata[f"{task}/{metric}"] = float(score)
    for task, n in queries.items():
        metadata[f"{task}/queries"] = float(n)
    return metadata
