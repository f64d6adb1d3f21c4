"""Evaluator (``{NEMO_URL}/v1/evaluation/...``): retriever jobs over BEIR tasks, configs and targets.

A job is validated when it is posted (unknown task type, metric, files_url or endpoint -> 422 naming it), then
runs in one background worker thread, one job at a time: ``created`` -> ``pending`` -> ``running`` ->
``completed`` | ``failed`` | ``cancelled``. The work itself is ``evaluation.py``. Results are stored in the
Entity Store (kind ``evaluation_result``) in the NeMo shape, so they survive a restart.

Secrets: a target's ``api_key`` is kept in memory only (for the job or stored target that carries it) and shows
as ``"*****"`` in every stored or returned document. A stored target re-used after a restart has no key.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, HTTPException, Request

from .. import evaluation
from ..evaluation import (
    CallableEmbedder,
    EmbeddingCache,
    EndpointEmbedder,
    EvaluationCancelled,
    EvaluationError,
)
from ..paths import InvalidPathError, validate_name
from .shared import request_ctx as _ctx
from ..store import AlreadyExists, EntityStore, atomic_write_text, new_id, utc_now
from .entities import paginated_list

log = logging.getLogger("embed_ft.platform.evaluator")

router = APIRouter()

JOB_KIND = "evaluation_job"
CONFIG_KIND = "evaluation_config"
TARGET_KIND = "evaluation_target"
RESULT_KIND = "evaluation_result"
TERMINAL = ("completed", "failed", "cancelled")
REDACTED = "*****"
DEFAULT_TOP_K = 10
DEFAULT_NAMESPACE = "default"
# The job document is updated at most this often while embedding (plus on every whole percent).
PROGRESS_INTERVAL_S = 1.0


def _service(request: Request) -> "EvaluationService":
    service = _ctx(request).services.get("evaluator")
    if service is None:
        raise HTTPException(503, "the evaluator service is not running")
    return service


# --------------------------------------------------------------------------------------------- validation


def _fail(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


def _require_dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(422, f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _optional_str(body: dict, key: str, where: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(422, f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def validate_config(config: Any) -> dict:
    """Check a retriever config (nemo-api.md section 8) and return it normalised (metric types filled in)."""
    config = _require_dict(config, "config")
    if config.get("type") != "retriever":
        raise _fail(422, f"config.type {config.get('type')!r} is not supported; the evaluator runs 'retriever' configs")
    tasks = _require_dict(config.get("tasks"), "config.tasks")
    if not tasks:
        raise _fail(422, "config.tasks is empty; give at least one BEIR task")
    normalised_tasks = {}
    for task_name, task in tasks.items():
        where = f"config.tasks.{task_name}"
        task = _require_dict(task, where)
        if task.get("type") != "beir":
            raise _fail(422, f"{where}.type {task.get('type')!r} is not supported; use 'beir'")
        dataset = _require_dict(task.get("dataset"), f"{where}.dataset")
        if "files_url" not in dataset:
            raise _fail(422, f"{where}.dataset.files_url is missing (e.g. 'file://scifact/' or 'hf://datasets/ns/name')")
        try:
            evaluation.validate_files_url(dataset["files_url"])
        except EvaluationError as exc:
            raise _fail(422, f"{where}: {exc}") from None
        metrics = _require_dict(task.get("metrics"), f"{where}.metrics")
        if not metrics:
            raise _fail(422, f"{where}.metrics is empty; give e.g. {{'recall_5': {{'type': 'recall_5'}}}}")
        normalised_metrics = {}
        for metric_name, metric in metrics.items():
            metric = _require_dict(metric if metric is not None else {}, f"{where}.metrics.{metric_name}")
            metric_type = metric.get("type", metric_name)
            try:
                evaluation.parse_metric(metric_type)
            except ValueError as exc:
                raise _fail(422, f"{where}.metrics.{metric_name}: {exc}") from None
            if metric_type != metric_name:
                raise _fail(422, f"{where}.metrics.{metric_name}: the key and its type {metric_type!r} must be equal")
            normalised_metrics[metric_name] = {**metric, "type": metric_type}
        normalised_tasks[task_name] = {**task, "metrics": normalised_metrics}
    return {**config, "tasks": normalised_tasks}


def _endpoint(pipeline: dict, key: str) -> dict:
    where = f"target.retriever.pipeline.{key}"
    model = _require_dict(pipeline.get(key), where)
    endpoint = _require_dict(model.get("api_endpoint"), f"{where}.api_endpoint")
    url, model_id = endpoint.get("url"), endpoint.get("model_id")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise _fail(422, f"{where}.api_endpoint.url {url!r} must be an http(s) URL of an embeddings endpoint")
    if not isinstance(model_id, str) or not model_id:
        raise _fail(422, f"{where}.api_endpoint.model_id must be a non-empty string")
    api_key = endpoint.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise _fail(422, f"{where}.api_endpoint.api_key must be a string")
    fmt = endpoint.get("format", "nim")
    if fmt not in ("nim", "openai"):
        raise _fail(422, f"{where}.api_endpoint.format {fmt!r} is not supported; use 'nim' or 'openai'")
    return endpoint


def validate_target(target: Any) -> dict:
    """Check a retriever target; return it unchanged. ``index_embedding_model`` defaults to the query model."""
    target = _require_dict(target, "target")
    if target.get("type") != "retriever":
        raise _fail(422, f"target.type {target.get('type')!r} is not supported; the evaluator runs 'retriever' targets")
    retriever = _require_dict(target.get("retriever"), "target.retriever")
    pipeline = _require_dict(retriever.get("pipeline"), "target.retriever.pipeline")
    _endpoint(pipeline, "query_embedding_model")
    if pipeline.get("index_embedding_model") is not None:
        _endpoint(pipeline, "index_embedding_model")
    if pipeline.get("ranker_model") is not None:
        raise _fail(422, "target.retriever.pipeline.ranker_model is not supported by this platform (dense retrieval only)")
    top_k = pipeline.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 10_000:
        raise _fail(422, f"target.retriever.pipeline.top_k must be an integer in 1..10000, got {top_k!r}")
    return target


def _pipeline_models(target: dict) -> dict[str, dict]:
    pipeline = target["retriever"]["pipeline"]
    query = pipeline["query_embedding_model"]
    return {"query_embedding_model": query, "index_embedding_model": pipeline.get("index_embedding_model") or query}


def split_secrets(target: dict) -> tuple[dict, dict[str, str]]:
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


def _ref(value: str, what: str) -> tuple[str, str]:
    namespace, sep, name = value.partition("/")
    if not sep:
        raise _fail(422, f"{what} reference {value!r} must be 'namespace/name'")
    try:
        validate_name(namespace, f"{what} namespace")
        validate_name(name, f"{what} name")
    except InvalidPathError as exc:
        raise _fail(422, str(exc)) from None
    return namespace, name


# --------------------------------------------------------------------------------------------- the worker


class EvaluationService:
    """One worker thread that runs queued evaluation jobs one at a time."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.store: EntityStore = ctx.store
        self.cache = EmbeddingCache(ctx.settings.cache_dir / "embeddings")
        self._queue: "queue.Queue[str]" = queue.Queue()
        # Serialises final status writes with cancel requests (re-entrant: cancel finishes jobs itself).
        self._lock = threading.RLock()
        self._cancel_requested: set[str] = set()
        self._job_secrets: dict[str, dict[str, str]] = {}
        self.target_secrets: dict[str, dict[str, str]] = {}
        self._stopping = threading.Event()
        self._current: str | None = None
        self._thread = threading.Thread(target=self._loop, name="evaluation-worker", daemon=True)

    # lifecycle
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)
        # Whatever is still queued will never run in this process.
        while True:
            try:
                job_id = self._queue.get_nowait()
            except queue.Empty:
                break
            doc = self.store.get(JOB_KIND, job_id)
            if doc is not None and doc["status"] not in TERMINAL:  # a cancelled one stays cancelled
                self._finish(job_id, "failed", "The platform stopped before this job started; submit it again.")

    # API used by the routes
    def submit(self, job_id: str, secrets: dict[str, str]) -> None:
        with self._lock:
            self._job_secrets[job_id] = secrets
        self._set_status(job_id, "pending", "queued", progress=0)
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            doc = self.store.get(JOB_KIND, job_id)
            if doc is None:
                raise _fail(404, f"evaluation job {job_id!r} not found")
            if doc["status"] in TERMINAL:
                raise _fail(409, f"evaluation job {job_id} is already {doc['status']}; it cannot be cancelled")
            self._cancel_requested.add(job_id)
            if self._current != job_id:
                return self._finish(job_id, "cancelled", "cancelled before it started")
            details = {**doc.get("status_details", {}),
                       "message": "cancellation requested; stopping after the current batch"}
            return self.store.update(JOB_KIND, job_id, {"status_details": details}) or doc

    # worker
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                if job_id in self._cancel_requested:  # cancelled while queued: already marked cancelled
                    self._cancel_requested.discard(job_id)
                    self._job_secrets.pop(job_id, None)
                    continue
                self._current = job_id
            try:
                self._run(job_id)
            except Exception:  # never let one job kill the worker
                log.exception("evaluation job %s crashed", job_id)
            finally:
                with self._lock:
                    self._current = None
                    self._cancel_requested.discard(job_id)
                    self._job_secrets.pop(job_id, None)

    def _should_stop(self, job_id: str) -> bool:
        return self._stopping.is_set() or job_id in self._cancel_requested

    def _run(self, job_id: str) -> None:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None or doc["status"] in TERMINAL:
            return
        started = time.perf_counter()
        self._set_status(job_id, "running", "starting", progress=0)
        try:
            result_doc = self._evaluate(job_id, doc)
        except EvaluationCancelled:
            if self._stopping.is_set() and job_id not in self._cancel_requested:
                self._finish(job_id, "failed", "The platform stopped while this job was running; submit it again.")
            else:
                self._finish(job_id, "cancelled", "cancelled by request")
            return
        except EvaluationError as exc:
            self._finish(job_id, "failed", str(exc))
            return
        except Exception as exc:
            log.exception("evaluation job %s failed", job_id)
            self._finish(job_id, "failed", f"internal error: {type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - started
        self.store.put(RESULT_KIND, result_doc["id"], result_doc)
        job_dir = self.ctx.settings.jobs_dir / job_id
        atomic_write_text(job_dir / "results.json", _json(result_doc))
        self._finish(job_id, "completed", f"completed in {elapsed:.1f} s", task_status=result_doc["task_status"],
                     result=result_doc["id"], output_files_url=result_doc["files_url"])

    def _embedders(self, job_id: str, target: dict) -> tuple[evaluation.Embedder, evaluation.Embedder]:
        with self._lock:
            secrets = dict(self._job_secrets.get(job_id, {}))
        built: dict[str, evaluation.Embedder] = {}
        pipeline = target["retriever"]["pipeline"]
        for key, model in _pipeline_models(target).items():
            # An index model that is not given is the query model, key included.
            key_owner = key if pipeline.get(key) else "query_embedding_model"
            built[key] = self._embedder_for(model["api_endpoint"], secrets.get(key_owner, ""))
        return built["query_embedding_model"], built["index_embedding_model"]

    def _is_own_url(self, url: str) -> bool:
        settings = self.ctx.settings
        parts = urlsplit(url)
        return (
            parts.hostname in {"127.0.0.1", "localhost", "::1", settings.host}
            and (parts.port or (443 if parts.scheme == "https" else 80)) == settings.port
            and parts.path.rstrip("/").endswith("/v1/embeddings")
        )

    def _embedder_for(self, endpoint: dict, api_key: str) -> evaluation.Embedder:
        url, model_id, fmt = endpoint["url"], endpoint["model_id"], endpoint.get("format", "nim")
        if self._is_own_url(url):
            # This platform's own NIM route: call the served model directly (same encode, no HTTP/base64).
            return self._in_process_embedder(model_id)
        return EndpointEmbedder(url, model_id, api_key, fmt)

    def _in_process_embedder(self, model_id: str) -> evaluation.Embedder:
        from .. import models
        from . import nim

        ctx = self.ctx
        try:
            entry = nim.served_model(ctx, model_id)
        except nim.ModelNotServed as exc:
            raise evaluation.EmbeddingEndpointError(f"embeddings endpoint of this platform: {exc}") from None

        def embed_batch(texts: list[str], input_type: str):
            try:
                return nim.embed_texts(ctx, model_id, texts, input_type)
            except (nim.ModelNotServed, models.ModelInputError) as exc:
                raise evaluation.EmbeddingEndpointError(f"embeddings of model {model_id!r}: {exc}") from None

        return CallableEmbedder(
            embed_batch,
            identity={"kind": "platform", "model_id": model_id, "weights": models.model_fingerprint(entry.path)},
        )

    def _evaluate(self, job_id: str, doc: dict) -> dict:
        query_embedder, index_embedder = self._embedders(job_id, doc["target"])
        try:
            return self._evaluate_tasks(job_id, doc, query_embedder, index_embedder)
        finally:
            for embedder in (query_embedder, index_embedder):
                if isinstance(embedder, EndpointEmbedder):
                    embedder.close()

    def _evaluate_tasks(self, job_id: str, doc: dict, query_embedder: evaluation.Embedder,
                        index_embedder: evaluation.Embedder) -> dict:
        config, target = doc["config"], doc["target"]
        top_k = target["retriever"]["pipeline"].get("top_k", DEFAULT_TOP_K)
        tasks = config["tasks"]
        task_metrics: dict[str, dict[str, float]] = {}
        task_status: dict[str, Any] = {}
        last_write = [0.0, -1]

        for index, (task_name, task) in enumerate(tasks.items()):
            def progress(fraction: float, message: str, index: int = index, task_name: str = task_name) -> None:
                percent = int(100 * (index + fraction) / len(tasks))
                now = time.monotonic()
                if percent != last_write[1] or now - last_write[0] >= PROGRESS_INTERVAL_S:
                    last_write[:] = [now, percent]
                    self._set_progress(job_id, min(percent, 99), f"{task_name}: {message}", task_status)

            files_url = task["dataset"]["files_url"]
            progress(0.0, f"loading {files_url}")
            dataset = evaluation.load_beir_dataset(files_url, self.ctx.settings.beir_root, hf_folder=self._hf_folder)
            if self._should_stop(job_id):
                raise EvaluationCancelled()
            outcome = evaluation.evaluate_retrieval(
                dataset, query_embedder, index_embedder, list(task["metrics"]), top_k,
                cache=self.cache, progress=progress, should_stop=lambda: self._should_stop(job_id),
            )
            task_metrics[task_name] = outcome.metrics
            task_status[task_name] = {
                "status": "completed", "num_queries": outcome.num_queries, "num_docs": outcome.num_docs,
                "top_k": outcome.top_k, "corpus_cache_hit": outcome.corpus_cache_hit,
                "timings_s": {k: round(v, 3) for k, v in outcome.timings_s.items()},
            }
        result_id = new_id("evaluation_result")
        result = evaluation.nemo_results(job_id, result_id, f"hf://datasets/evaluation-results/{job_id}", task_metrics)
        result.update({"namespace": doc.get("namespace"), "created_at": utc_now(), "task_status": task_status})
        return result

    def _hf_folder(self, namespace: str, name: str):
        from . import datastore

        try:
            return datastore.repo_files_dir(self.ctx.settings, "dataset", namespace, name)
        except LookupError as exc:
            raise evaluation.DatasetNotFound(
                f"Data Store dataset {namespace}/{name} does not exist (upload the BEIR files to it first): {exc}"
            ) from None

    # status updates
    def _set_status(self, job_id: str, status: str, message: str, progress: int | None = None) -> dict | None:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None:
            return None
        details = dict(doc.get("status_details") or {})
        details["message"] = message
        if progress is not None:
            details["progress"] = progress
        logs = [*doc.get("status_logs", []), {"updated_at": utc_now(), "status": status, "message": message}]
        return self.store.update(JOB_KIND, job_id, {"status": status, "status_details": details, "status_logs": logs})

    def _set_progress(self, job_id: str, percent: int, message: str, task_status: dict) -> None:
        with self._lock:  # not over a cancel request's message
            doc = self.store.get(JOB_KIND, job_id)
            if doc is None or job_id in self._cancel_requested:
                return
            details = {**doc.get("status_details", {}), "progress": percent, "message": message,
                       "task_status": dict(task_status)}
            self.store.update(JOB_KIND, job_id, {"status_details": details})

    def _finish(self, job_id: str, status: str, message: str, **extra: Any) -> dict:
        with self._lock:
            return self._finish_locked(job_id, status, message, **extra)

    def _finish_locked(self, job_id: str, status: str, message: str, task_status: dict | None = None,
                       **extra: Any) -> dict:
        doc = self.store.get(JOB_KIND, job_id) or {}
        details = dict(doc.get("status_details") or {})
        details["message"] = message
        if task_status is not None:
            details["task_status"] = task_status
        if status == "completed":
            details["progress"] = 100
        entry: dict[str, Any] = {"updated_at": utc_now(), "status": status, "message": message}
        if status == "failed":
            entry["detail"] = message
        logs = [*doc.get("status_logs", []), entry]
        return self.store.update(JOB_KIND, job_id, {"status": status, "status_details": details,
                                                   "status_logs": logs, **extra}) or doc


def _json(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True)


def on_startup(ctx) -> None:
    service = EvaluationService(ctx)
    ctx.services["evaluator"] = service
    service.start()


def on_shutdown(ctx) -> None:
    service = ctx.services.pop("evaluator", None)
    if service is not None:
        service.stop()


# --------------------------------------------------------------------------------------------- configs & targets


def _create_named(request: Request, kind: str, body: dict, validate) -> dict:
    what = kind.replace("evaluation_", "")
    body = _require_dict(body, what)
    name = body.get("name")
    namespace = body.get("namespace") or DEFAULT_NAMESPACE
    if not isinstance(name, str):
        raise _fail(422, f"{what}.name is required (a string)")
    try:
        validate_name(namespace, f"{what} namespace")
        validate_name(name, f"{what} name")
    except InvalidPathError as exc:
        raise _fail(422, str(exc)) from None
    doc = {**validate(body), "name": name, "namespace": namespace, "id": f"{namespace}/{name}"}
    secrets: dict[str, str] = {}
    if kind == TARGET_KIND:
        doc, secrets = split_secrets(doc)
    try:
        created = _ctx(request).store.create(kind, doc["id"], doc)
    except AlreadyExists:
        raise _fail(409, f"evaluation {what} {doc['id']!r} already exists") from None
    if secrets:
        _service(request).target_secrets[doc["id"]] = secrets
    return created


def _get_named(request: Request, kind: str, namespace: str, name: str) -> dict:
    doc = _ctx(request).store.get(kind, f"{namespace}/{name}")
    if doc is None:
        raise _fail(404, f"evaluation {kind.replace('evaluation_', '')} {namespace}/{name!s} not found")
    return doc


@router.post("/v1/evaluation/configs", status_code=200)
def create_config(request: Request, body: dict = Body(...)):
    return _create_named(request, CONFIG_KIND, body, validate_config)


@router.get("/v1/evaluation/configs")
def list_configs(request: Request):
    return paginated_list(request, _ctx(request).store.list(CONFIG_KIND))


@router.get("/v1/evaluation/configs/{namespace}/{name}")
def get_config(namespace: str, name: str, request: Request):
    return _get_named(request, CONFIG_KIND, namespace, name)


@router.delete("/v1/evaluation/configs/{namespace}/{name}")
def delete_config(namespace: str, name: str, request: Request):
    _get_named(request, CONFIG_KIND, namespace, name)
    _ctx(request).store.delete(CONFIG_KIND, f"{namespace}/{name}")
    return {"message": "Resource deleted successfully.", "id": f"{namespace}/{name}", "deleted_at": utc_now()}


@router.post("/v1/evaluation/targets", status_code=200)
def create_target(request: Request, body: dict = Body(...)):
    return _create_named(request, TARGET_KIND, body, validate_target)


@router.get("/v1/evaluation/targets")
def list_targets(request: Request):
    return paginated_list(request, _ctx(request).store.list(TARGET_KIND))


@router.get("/v1/evaluation/targets/{namespace}/{name}")
def get_target(namespace: str, name: str, request: Request):
    return _get_named(request, TARGET_KIND, namespace, name)


@router.delete("/v1/evaluation/targets/{namespace}/{name}")
def delete_target(namespace: str, name: str, request: Request):
    _get_named(request, TARGET_KIND, namespace, name)
    _ctx(request).store.delete(TARGET_KIND, f"{namespace}/{name}")
    _service(request).target_secrets.pop(f"{namespace}/{name}", None)
    return {"message": "Resource deleted successfully.", "id": f"{namespace}/{name}", "deleted_at": utc_now()}


# --------------------------------------------------------------------------------------------- jobs


def _job(request: Request, job_id: str) -> dict:
    doc = _ctx(request).store.get(JOB_KIND, job_id)
    if doc is None:
        raise _fail(404, f"evaluation job {job_id!r} not found")
    return doc


@router.post("/v1/evaluation/jobs", status_code=200)
def create_job(request: Request, body: dict = Body(...)):
    body = _require_dict(body, "body")
    service = _service(request)
    store = _ctx(request).store
    namespace = body.get("namespace")
    if namespace is not None:
        try:
            validate_name(namespace, "namespace")
        except InvalidPathError as exc:
            raise _fail(422, str(exc)) from None
    for key in ("description", "project"):
        _optional_str(body, key, "body")
    custom_fields = body.get("custom_fields")
    if custom_fields is not None and not isinstance(custom_fields, dict):
        raise _fail(422, f"custom_fields must be a JSON object, got {type(custom_fields).__name__}")

    config = body.get("config")
    if config is None:
        raise _fail(422, "config is required: an inline retriever config or a 'namespace/name' reference")
    if isinstance(config, str):
        ns, name = _ref(config, "config")
        stored = store.get(CONFIG_KIND, f"{ns}/{name}")
        if stored is None:
            raise _fail(404, f"evaluation config {config!r} not found; create it with POST /v1/evaluation/configs")
        config = stored
    config = validate_config(config)

    target = body.get("target")
    if target is None:
        raise _fail(422, "target is required: an inline retriever target or a 'namespace/name' reference")
    secrets: dict[str, str] = {}
    if isinstance(target, str):
        ns, name = _ref(target, "target")
        stored = store.get(TARGET_KIND, f"{ns}/{name}")
        if stored is None:
            raise _fail(404, f"evaluation target {target!r} not found; create it with POST /v1/evaluation/targets")
        target = validate_target(stored)
        secrets = dict(service.target_secrets.get(stored["id"], {}))
    else:
        target, secrets = split_secrets(validate_target(target))

    job_id = new_id("eval")
    doc = {
        "id": job_id,
        "namespace": namespace or config.get("namespace") or DEFAULT_NAMESPACE,
        "description": body.get("description"),
        "project": body.get("project"),
        "config": config,
        "target": target,
        "custom_fields": custom_fields if custom_fields is not None else {},
        "status": "created",
        "status_details": {"progress": 0, "message": "created", "task_status": {}},
        "status_logs": [{"updated_at": utc_now(), "status": "created", "message": "created"}],
        "result": None,
        "output_files_url": None,
    }
    store.create(JOB_KIND, job_id, doc)
    service.submit(job_id, secrets)
    return store.get(JOB_KIND, job_id)


@router.get("/v1/evaluation/jobs")
def list_jobs(request: Request):
    return paginated_list(request, _ctx(request).store.list(JOB_KIND))


@router.get("/v1/evaluation/jobs/{job_id}")
def get_job(job_id: str, request: Request):
    return _job(request, job_id)


@router.get("/v1/evaluation/jobs/{job_id}/status")
def get_job_status(job_id: str, request: Request):
    doc = _job(request, job_id)
    details = doc.get("status_details") or {}
    # NeMo's status route has no "status" field (clients poll the job itself); kept in that shape.
    return {"job_id": job_id, "message": details.get("message"), "progress": details.get("progress"),
            "task_status": details.get("task_status", {})}


@router.post("/v1/evaluation/jobs/{job_id}/cancel")
def cancel_job(job_id: str, request: Request):
    return _service(request).cancel(job_id)


@router.delete("/v1/evaluation/jobs/{job_id}")
def delete_job(job_id: str, request: Request):
    doc = _job(request, job_id)
    if doc["status"] not in TERMINAL:
        raise _fail(409, f"evaluation job {job_id} is {doc['status']}; cancel it before deleting it")
    store = _ctx(request).store
    if doc.get("result"):
        store.delete(RESULT_KIND, doc["result"])
    store.delete(JOB_KIND, job_id)
    return {"message": "Resource deleted successfully.", "id": job_id, "deleted_at": utc_now()}


@router.get("/v1/evaluation/jobs/{job_id}/results")
def get_job_results(job_id: str, request: Request):
    doc = _job(request, job_id)
    if doc["status"] != "completed":
        detail = (doc.get("status_details") or {}).get("message") or ""
        raise _fail(409, f"evaluation job {job_id} is {doc['status']}; results exist once it is completed"
                         + (f" ({detail})" if detail else ""))
    result = _ctx(request).store.get(RESULT_KIND, doc["result"]) if doc.get("result") else None
    if result is None:
        raise _fail(404, f"the results of evaluation job {job_id} are missing from the store")
    return {key: result[key] for key in ("job", "id", "files_url", "tasks", "namespace", "created_at") if key in result}
