"""Checks of the Evaluator's retriever configs and targets (inline or stored), and the api keys kept out of them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ...paths import InvalidPathError, validate_name
from ..errors import InvalidInputError
from .beir import validate_files_url
from .errors import EvaluationError
from .metrics import parse_metric

REDACTED = "*****"
DEFAULT_TOP_K = 10


def require_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(where, f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def optional_str(body: dict[str, Any], key: str, where: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(where, f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def validate_config(config: Any) -> dict[str, Any]:
    """Check a retriever config (docs/NEMO_CONTRACT.md section 9) and return it normalised (metric types filled in)."""
    config = require_dict(config, "config")
    if config.get("type") != "retriever":
        raise InvalidInputError(
            "config", f"config.type {config.get('type')!r} is not supported; the evaluator runs 'retriever' configs"
        )
    tasks = require_dict(config.get("tasks"), "config.tasks")
    if not tasks:
        raise InvalidInputError("config.tasks", "config.tasks is empty; give at least one BEIR task")
    normalised_tasks = {}
    for task_name, task in tasks.items():
        where = f"config.tasks.{task_name}"
        task = require_dict(task, where)
        if task.get("type") != "beir":
            raise InvalidInputError(where, f"{where}.type {task.get('type')!r} is not supported; use 'beir'")
        dataset = require_dict(task.get("dataset"), f"{where}.dataset")
        if "files_url" not in dataset:
            raise InvalidInputError(
                where, f"{where}.dataset.files_url is missing (e.g. 'file://scifact/' or 'hf://datasets/ns/name')"
            )
        try:
            validate_files_url(dataset["files_url"])
        except EvaluationError as exc:
            raise InvalidInputError(where, f"{where}: {exc}") from None
        metrics = require_dict(task.get("metrics"), f"{where}.metrics")
        if not metrics:
            raise InvalidInputError(
                where, f"{where}.metrics is empty; give e.g. {{'recall_5': {{'type': 'recall_5'}}}}"
            )
        normalised_metrics = {}
        for metric_name, metric in metrics.items():
            metric = require_dict(metric if metric is not None else {}, f"{where}.metrics.{metric_name}")
            metric_type = metric.get("type", metric_name)
            try:
                parse_metric(metric_type)
            except ValueError as exc:
                raise InvalidInputError(where, f"{where}.metrics.{metric_name}: {exc}") from None
            if metric_type != metric_name:
                raise InvalidInputError(
                    where, f"{where}.metrics.{metric_name}: the key and its type {metric_type!r} must be equal"
                )
            normalised_metrics[metric_name] = {**metric, "type": metric_type}
        normalised_tasks[task_name] = {**task, "metrics": normalised_metrics}
    return {**config, "tasks": normalised_tasks}


def _endpoint(pipeline: dict[str, Any], key: str) -> dict[str, Any]:
    where = f"target.retriever.pipeline.{key}"
    model = require_dict(pipeline.get(key), where)
    endpoint = require_dict(model.get("api_endpoint"), f"{where}.api_endpoint")
    url, model_id = endpoint.get("url"), endpoint.get("model_id")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise InvalidInputError(
            where, f"{where}.api_endpoint.url {url!r} must be an http(s) URL of an embeddings endpoint"
        )
    if not isinstance(model_id, str) or not model_id:
        raise InvalidInputError(where, f"{where}.api_endpoint.model_id must be a non-empty string")
    api_key = endpoint.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise InvalidInputError(where, f"{where}.api_endpoint.api_key must be a string")
    fmt = endpoint.get("format", "nim")
    if fmt not in ("nim", "openai"):
        raise InvalidInputError(where, f"{where}.api_endpoint.format {fmt!r} is not supported; use 'nim' or 'openai'")
    return endpoint


def validate_target(value: Any) -> dict[str, Any]:
    """Check a retriever target; return it unchanged. ``index_embedding_model`` defaults to the query model."""
    target = require_dict(value, "target")
    if target.get("type") != "retriever":
        raise InvalidInputError(
            "target", f"target.type {target.get('type')!r} is not supported; the evaluator runs 'retriever' targets"
        )
    retriever = require_dict(target.get("retriever"), "target.retriever")
    pipeline = require_dict(retriever.get("pipeline"), "target.retriever.pipeline")
    _endpoint(pipeline, "query_embedding_model")
    if pipeline.get("index_embedding_model") is not None:
        _endpoint(pipeline, "index_embedding_model")
    if pipeline.get("ranker_model") is not None:
        raise InvalidInputError(
            "target", "target.retriever.pipeline.ranker_model is not supported by this platform (dense retrieval only)"
        )
    top_k = pipeline.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 10_000:
        raise InvalidInputError(
            "target", f"target.retriever.pipeline.top_k must be an integer in 1..10000, got {top_k!r}"
        )
    return target


def pipeline_models(target: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pipeline = target["retriever"]["pipeline"]
    query = pipeline["query_embedding_model"]
    return {"query_embedding_model": query, "index_embedding_model": pipeline.get("index_embedding_model") or query}


def split_secrets(target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of ``target`` with api keys redacted, and the keys by pipeline model name."""
    redacted = {**target, "retriever": {**target["retriever"], "pipeline": dict(target["retriever"]["pipeline"])}}
    pipeline = redacted["retriever"]["pipeline"]
    secrets: dict[str, str] = {}
    for key in ("query_embedding_model", "index_embedding_model"):
        model = pipeline.get(key)
        if not isinstance(model, dict):
            continue
        endpoint = dict(model["api_endpoint"])
        if endpoint.get("api_key"):
            secrets[key] = endpoint["api_key"]
            endpoint["api_key"] = REDACTED
        pipeline[key] = {**model, "api_endpoint": endpoint}
    return redacted, secrets


def parse_ref(value: str, what: str) -> tuple[str, str]:
    namespace, sep, name = value.partition("/")
    if not sep:
        raise InvalidInputError(what, f"{what} reference {value!r} must be 'namespace/name'")
    try:
        validate_name(namespace, f"{what} namespace")
        validate_name(name, f"{what} name")
    except InvalidPathError as exc:
        raise InvalidInputError(what, str(exc)) from None
    return namespace, name
