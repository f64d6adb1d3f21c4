"""Evaluator client: retriever (BEIR) evaluation jobs and their results (``{NEMO_URL}/v1/evaluation``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from .customizer import IDEMPOTENCY_FIELD, idempotency_key_of, with_idempotency_key
from .errors import NemoResponseError, checked_answer, register_secret
from .http import CreateResult, ServiceHTTP, cancel_job, create_job_once, find_by_idempotency_key, segment
from .v1.evaluation import (
    ApiEndpoint,
    BeirDataset,
    BeirTask,
    EmbeddingModel,
    Job as EvaluationJob,
    JobRequest as EvaluationJobRequest,
    MetricSpec,
    Retriever,
    RetrieverConfig,
    RetrieverPipeline,
    RetrieverTarget,
)

log = logging.getLogger("embed_ft.nemo")

JOBS = "/v1/evaluation/jobs"
DEFAULT_METRICS = ("recall_5", "ndcg_cut_5", "recall_10", "ndcg_cut_10")
__all__ = [
    "DEFAULT_METRICS",
    "IDEMPOTENCY_FIELD",
    "EvaluatorClient",
    "beir_task",
    "parse_metrics",
    "retriever_config",
    "retriever_target",
]


# Request bodies (exactly the tutorial's shapes), built with the v1 contract's models
def beir_task(files_url: str, metrics: Iterable[str] = DEFAULT_METRICS, name: str = "my-beir-task") -> dict[str, Any]:
    """``{name: {"type": "beir", "dataset": {"files_url"}, "metrics": {m: {"type": m}}}}``; merge several with ``|``."""
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"BEIR task {name!r} needs at least one metric")
    task = BeirTask(
        type="beir", dataset=BeirDataset(files_url=files_url), metrics={m: MetricSpec(type=m) for m in metrics}
    )
    return {name: task.body()}


def retriever_config(namespace: str, tasks: dict[str, Any]) -> dict[str, Any]:
    if not tasks:
        raise ValueError("a retriever evaluation config needs at least one task")
    return RetrieverConfig.model_validate({"type": "retriever", "namespace": namespace, "tasks": tasks}).body()


def retriever_target(nim_url: str, model_id: str, top_k: int = 10, api_key: str = "") -> dict[str, Any]:
    """The tutorial's retriever target: the same NIM endpoint embeds queries and the index."""
    register_secret(api_key)
    endpoint = ApiEndpoint(url=f"{nim_url.rstrip('/')}/v1/embeddings", model_id=model_id, api_key=api_key)
    pipeline = RetrieverPipeline(
        query_embedding_model=EmbeddingModel(api_endpoint=endpoint),
        index_embedding_model=EmbeddingModel(api_endpoint=endpoint),
        top_k=top_k,
    )
    return RetrieverTarget(type="retriever", retriever=Retriever(pipeline=pipeline)).body()


# Results parsing
def _metric_name(key: Any) -> str:
    """``"retriever.recall_5"`` -> ``"recall_5"`` (the suffix is the metric in every server version)."""
    return str(key).rsplit(".", 1)[-1]


def _number(value: Any, where: str) -> float:
    if isinstance(value, dict):
        value = value.get("value", value.get("score"))
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NemoResponseError(f"evaluation results: {where} has no numeric value (got {value!r})")
    try:
        number = float(value)
    except ValueError:
        raise NemoResponseError(f"evaluation results: {where} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise NemoResponseError(f"evaluation results: {where} is not finite: {value!r}")
    return number


def _entry_name(entry: dict[str, Any]) -> Any:
    for key in ("name", "metric", "metric_name", "type", "key", "id"):
        if entry.get(key):
            return entry[key]
    return None


def _parse_scores(scores: Any, where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    items = scores.items() if isinstance(scores, dict) else ((_entry_name(s), s) for s in scores if isinstance(s, dict))
    for name, score in items:
        if name is not None:
            out[_metric_name(name)] = _number(score, f"{where} score {name!r}")
    return out


def _parse_metric(name: Any, doc: Any, where: str) -> dict[str, float]:
    """One metric entry: ``{"scores": {...}}``, ``{"value": x}``, or a bare number."""
    if isinstance(doc, dict) and isinstance(doc.get("scores"), (dict, list)) and doc["scores"]:
        return _parse_scores(doc["scores"], f"{where} metric {name!r}")
    if name is None:
        return {}
    return {_metric_name(name): _number(doc, f"{where} metric {name!r}")}


def _parse_metrics(metrics: Any, where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(metrics, dict):
        for name, doc in metrics.items():
            out.update(_parse_metric(name, doc, where))
    elif isinstance(metrics, list):
        for doc in metrics:
            if isinstance(doc, dict):
                out.update(_parse_metric(_entry_name(doc), doc, where))
    return out


def _parse_tasks(tasks: Any, kind: str) -> dict[str, dict[str, float]]:
    """``{task: {"metrics": ...}}`` (tasks / groups) or ``[{"name": task, "metrics": ...}]`` (older list form)."""
    if isinstance(tasks, dict):
        items = list(tasks.items())
    elif isinstance(tasks, list):
        items = [
            (t.get("name") or t.get("task") or t.get("task_name") or t.get("id"), t)
            for t in tasks
            if isinstance(t, dict)
        ]
    else:
        return {}
    out: dict[str, dict[str, float]] = {}
    for task, doc in items:
        if task is None or not isinstance(doc, dict):
            continue
        metrics = _parse_metrics(doc.get("metrics"), f"{kind} {task!r}")
        if metrics:
            out[str(task)] = metrics
    return out


def _parse_rows(rows: list[Any]) -> dict[str, dict[str, float]]:
    """A flat list of ``{"task", "metric"|"name", "value"}`` rows."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        task = row.get("task") or row.get("task_name") or row.get("group")
        name = row.get("metric") or row.get("metric_name") or row.get("name")
        if task and name and ("value" in row or "score" in row):
            out.setdefault(str(task), {})[_metric_name(name)] = _number(row, f"task {task!r} metric {name!r}")
    return out


def _describe(results: Any) -> str:
    if isinstance(results, dict):
        inner = {k: type(v).__name__ for k, v in list(results.items())[:12]}
        return f"an object with keys {inner}"
    if isinstance(results, list):
        first = results[0] if results else None
        return f"a list of {len(results)} items (first: {str(first)[:120]!r})"
    return f"a {type(results).__name__}"


def parse_metrics(results: Any) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` from any of the documented result shapes.

    - ``{"tasks": {task: {"metrics": {"retriever.recall_5": {"scores": {"recall_5": {"value": x}}}}}}}``
    - ``{"groups": {group: {"metrics": {"evaluation": {"scores": {"recall_5": {"value": x}}}}}}}``
    - older list forms: ``{"tasks": [{"name": task, "metrics": [{"name": "retriever.recall_5", "value": x}]}]}``
      or a flat list of ``{"task", "metric", "value"}`` rows.
    Metric names are taken by suffix (``retriever.recall_5`` -> ``recall_5``). Anything else raises
    :class:`NemoResponseError` describing what was found.
    """
    parsed: dict[str, dict[str, float]] = {}
    if isinstance(results, dict):
        for key in ("tasks", "groups"):
            if results.get(key):
                parsed = _parse_tasks(results[key], key[:-1])
                if parsed:
                    return parsed
        if isinstance(results.get("results"), (dict, list)):
            return parse_metrics(results["results"])
    elif isinstance(results, list):
        parsed = _parse_rows(results) or _parse_tasks(results, "task")
        if parsed:
            return parsed
    raise NemoResponseError(
        "evaluation results: no task metrics found in the known shapes ('tasks', 'groups', or a list of "
        f"task/metric rows); got {_describe(results)}"
    )


class EvaluatorClient:
    def __init__(self, http: ServiceHTTP) -> None:
        self.http = http

    def create_job(
        self, config: dict[str, Any] | str, target: dict[str, Any] | str, idempotency_key: str | None = None
    ) -> CreateResult:
        """Submit an evaluation job (inline ``config``/``target`` or ``ns/name`` refs); never resubmitted blindly."""
        request = EvaluationJobRequest.model_validate({"config": config, "target": target})
        body = with_idempotency_key(request.body(), idempotency_key)
        return create_job_once(self.http, JOBS, body, idempotency_key, "evaluation job", self.find_job)

    def find_job(self, idempotency_key: str) -> dict[str, Any] | None:
        """The newest evaluation job whose ``custom_fields`` carry this key, or None: filtered on the server
        (``filter[custom_fields][<field>]=<key>``), then checked here over every page of the answer."""
        return find_by_idempotency_key(
            self.http,
            JOBS,
            idempotency_key,
            "evaluation job",
            idempotency_key_of,
            filters={"custom_fields": {IDEMPOTENCY_FIELD: idempotency_key}},
        )

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job (poll this one: its ``status`` and ``status_details.progress``)."""
        doc = self.http.get_object(f"{JOBS}/{segment(job_id)}", call="get evaluation job")
        return checked_answer(EvaluationJob, doc, "Evaluator: get evaluation job")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop. A job that already ended is returned as it is instead of raising."""
        return cancel_job(self.http, JOBS, job_id, "evaluation job", self.get_job)

    def get_results(self, job_id: str) -> Any:
        return self.http.get(f"{JOBS}/{segment(job_id)}/results", call="get evaluation results")

    parse_metrics = staticmethod(parse_metrics)
