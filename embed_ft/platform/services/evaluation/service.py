"""The Evaluator's job service: runs retriever evaluation jobs, one at a time, on the shared ``JobRunner``.

A job goes ``created`` -> ``pending`` -> ``running`` -> ``completed`` | ``failed`` | ``cancelled``. Results are
stored in the Entity Store (kind ``evaluation_result``) in the NeMo shape, so they survive a restart.

Each job runs in a thread of its own, watched by the runner's worker: a cancel (or the platform stopping) that
the job does not honour within ``CANCEL_GRACE_S`` (a request to a stalled endpoint blocks it) ends the job at
once, ``cancelled``, and the queue goes on; the abandoned thread ends when its request returns or times out
(``settings.evaluation_request_timeout_s``) and writes nothing. A stalled endpoint therefore never holds the queue
longer than that timeout, and a cancel never waits for it.

Secrets: a target's ``api_key`` is kept in memory only (for the job or stored target that carries it) and shows
as ``"*****"`` in every stored or returned document. A stored target re-used after a restart has no key.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from embed_ft.formats.files import atomic_write_text
from embed_ft.nemo.status import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, TERMINAL_JOB_STATUSES

from ...settings import PlatformSettings
from ...store import EntityStore, new_id, utc_now
from ..embedding import ModelInputError
from ..errors import ConflictError, NotFoundError
from ..jobs import JobAborted, JobCancelled, JobRunner
from ..model_weights import model_fingerprint
from ..repo_store import RepoStore
from ..serving import ModelNotServed, ServingRegistry
from .beir import load_beir_dataset
from .cache import EmbeddingCache
from .embedders import CallableEmbedder, Embedder, EndpointEmbedder
from .errors import DatasetNotFound, EmbeddingEndpointError, EvaluationError
from .metrics import nemo_results
from .retrieval import evaluate_retrieval
from .validation import DEFAULT_TOP_K, pipeline_models

log = logging.getLogger("embed_ft.platform.evaluator")

JOB_KIND = "evaluation_job"
RESULT_KIND = "evaluation_result"
# The job document is updated at most this often while embedding (plus on every whole percent).
PROGRESS_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 30.0
# How often the worker looks for a cancel of the job it watches, and how long the job then has to stop itself.
CANCEL_POLL_S = 0.2
CANCEL_GRACE_S = 5.0


def task_status_details(task_status: dict[str, Any]) -> dict[str, Any]:
    """A job's ``status_details`` per task: ``task_status`` maps a task to its status word (the SDK's ``TaskStatus``:
    pending, running, completed, failed); ``task_details`` keeps what the evaluator measured (queries, timings)."""
    return {
        "task_status": {
            task: (doc.get("status") if isinstance(doc, dict) else str(doc)) or "running"
            for task, doc in task_status.items()
        },
        "task_details": {task: doc for task, doc in task_status.items() if isinstance(doc, dict)},
    }


class EvaluationService:
    """Queued evaluation jobs, run one at a time by the runner's worker thread."""

    def __init__(
        self, settings: PlatformSettings, store: EntityStore, repos: RepoStore, serving: ServingRegistry
    ) -> None:
        self.settings = settings
        self.store = store
        self.repos = repos
        self.serving = serving
        self.cache = EmbeddingCache(settings.cache_dir / "embeddings")
        self.jobs = JobRunner(store, JOB_KIND, "evaluation job", log_status=True)
        self._job_secrets: dict[str, dict[str, str]] = {}
        self.target_secrets: dict[str, dict[str, str]] = {}

    # ---- life cycle

    def start(self) -> None:
        self.jobs.start(self._run)

    def stop(self) -> None:
        def fail_abandoned(job_id: str, doc: dict[str, Any]) -> None:
            when = "while this job was running" if doc["status"] == RUNNING else "before this job started"
            self._finish(job_id, FAILED, f"The platform stopped {when}; submit it again.")

        self.jobs.stop(STOP_TIMEOUT_S, fail_abandoned)

    # ---- the service's API

    def submit(self, job_id: str, secrets: dict[str, str]) -> None:
        with self.jobs.lock:
            self._job_secrets[job_id] = secrets
        self.jobs.set_status(job_id, PENDING, "queued", details={"message": "queued", "progress": 0})
        self.jobs.submit(job_id)

    def get_job(self, job_id: str) -> dict[str, Any]:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None:
            raise NotFoundError(f"evaluation job {job_id!r} not found")
        return doc

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.jobs.lock:
            doc = self.get_job(job_id)
            if doc["status"] in TERMINAL_JOB_STATUSES:
                raise ConflictError(f"evaluation job {job_id} is already {doc['status']}; it cannot be cancelled")
            if not self.jobs.request_cancel(job_id):
                return self._finish(job_id, CANCELLED, "cancelled before it started")
            details = {
                **doc.get("status_details", {}),
                "message": "cancellation requested; stopping after the current batch",
            }
            return self.store.update(JOB_KIND, job_id, {"status_details": details}) or doc

    # ---- running one job

    def _finish(
        self, job_id: str, status: str, message: str, task_status: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Write the job's final status, unless it has one already (an abandoned job's thread finishing late)."""
        with self.jobs.lock:
            current = self.store.get(JOB_KIND, job_id)
            if current is not None and current["status"] in TERMINAL_JOB_STATUSES:
                return current
            return self._write_final(job_id, status, message, task_status, **fields)

    def _write_final(
        self, job_id: str, status: str, message: str, task_status: dict[str, Any] | None, **fields: Any
    ) -> dict[str, Any]:
        details: dict[str, Any] = {"message": message}
        if task_status is not None:
            details.update(task_status_details(task_status))
        if status == COMPLETED:
            details["progress"] = 100
        detail = message if status == FAILED else None
        return self.jobs.set_status(job_id, status, message, detail, details=details, **fields) or {}

    def _run(self, job_id: str) -> None:
        """Run one job in its own thread and wait for it; give up on it when it does not honour a cancel."""
        worker = threading.Thread(
            target=self._run_job_guarded, args=(job_id,), name=f"evaluation-{job_id}", daemon=True
        )
        try:
            worker.start()
            while worker.is_alive():
                worker.join(CANCEL_POLL_S)
                if worker.is_alive() and self.jobs.should_stop(job_id):
                    worker.join(CANCEL_GRACE_S)  # its own checks (between batches) end it, usually
                    if worker.is_alive():
                        self._abandon(job_id)
                        return
        finally:
            with self.jobs.lock:
                self._job_secrets.pop(job_id, None)

    def _run_job_guarded(self, job_id: str) -> None:
        try:
            self._run_job(job_id)
        except Exception as exc:  # the job's thread must end the job, whatever happened
            if self.jobs.stopping:  # an abandoned job finishing after the platform closed its store
                log.info("evaluation job %s ended after the platform stopped: %s", job_id, exc)
                return
            log.exception("evaluation job %s failed in the platform", job_id)
            self._finish(job_id, FAILED, f"internal error: {type(exc).__name__}: {exc}")

    def _abandon(self, job_id: str) -> None:
        log.warning(
            "evaluation job %s did not stop within %.0f s (a request in flight); it is ended and its "
            "thread left to finish on its own",
            job_id,
            CANCEL_GRACE_S,
        )
        if self.jobs.cancel_requested(job_id):
            self._finish(
                job_id, CANCELLED, "cancelled by request (a request to the embeddings endpoint in flight was abandoned)"
            )
        else:
            self._finish(job_id, FAILED, "The platform stopped while this job was running; submit it again.")

    def _run_job(self, job_id: str) -> None:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None or doc["status"] in TERMINAL_JOB_STATUSES:
            return
        started = time.perf_counter()
        self.jobs.set_status(job_id, RUNNING, "starting", details={"message": "starting", "progress": 0})
        try:
            result_doc = self._evaluate(job_id, doc)
        except JobCancelled:
            if self.jobs.stopping and not self.jobs.cancel_requested(job_id):
                self._finish(job_id, FAILED, "The platform stopped while this job was running; submit it again.")
            else:
                self._finish(job_id, CANCELLED, "cancelled by request")
            return
        except (EvaluationError, JobAborted) as exc:
            if self.jobs.cancel_requested(job_id):  # the request it was in failed because of the cancel
                self._finish(job_id, CANCELLED, "cancelled by request")
            else:
                self._finish(job_id, FAILED, str(exc))
            return
        except Exception as exc:
            log.exception("evaluation job %s failed", job_id)
            self._finish(job_id, FAILED, f"internal error: {type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - started
        with self.jobs.lock:
            current = self.store.get(JOB_KIND, job_id)
            if current is None or current["status"] in TERMINAL_JOB_STATUSES:
                return  # ended (cancelled) while its last request was in flight: no result
            self.store.put(RESULT_KIND, result_doc["id"], result_doc)
        atomic_write_text(
            self.settings.jobs_dir / job_id / "results.json", json.dumps(result_doc, indent=1, sort_keys=True)
        )
        self._finish(
            job_id,
            COMPLETED,
            f"completed in {elapsed:.1f} s",
            task_status=result_doc["task_status"],
            result=result_doc["id"],
            output_files_url=result_doc["files_url"],
        )

    def _embedders(self, job_id: str, target: dict[str, Any]) -> tuple[Embedder, Embedder]:
        with self.jobs.lock:
            secrets = dict(self._job_secrets.get(job_id, {}))
        built: dict[str, Embedder] = {}
        pipeline = target["retriever"]["pipeline"]
        for key, model in pipeline_models(target).items():
            # An index model that is not given is the query model, key included.
            key_owner = key if pipeline.get(key) else "query_embedding_model"
            built[key] = self._embedder_for(model["api_endpoint"], secrets.get(key_owner, ""))
        return built["query_embedding_model"], built["index_embedding_model"]

    def _is_own_url(self, url: str) -> bool:
        parts = urlsplit(url)
        return (
            parts.hostname in {"127.0.0.1", "localhost", "::1", self.settings.host}
            and (parts.port or (443 if parts.scheme == "https" else 80)) == self.settings.port
            and parts.path.rstrip("/").endswith("/v1/embeddings")
        )

    def _embedder_for(self, endpoint: dict[str, Any], api_key: str) -> Embedder:
        url, model_id, fmt = endpoint["url"], endpoint["model_id"], endpoint.get("format", "nim")
        if self._is_own_url(url):
            # This platform's own NIM route: call the served model directly (same encode, no HTTP/base64).
            return self._in_process_embedder(model_id)
        timeout = (EndpointEmbedder.CONNECT_TIMEOUT_S, self.settings.evaluation_request_timeout_s)
        return EndpointEmbedder(url, model_id, api_key, fmt, timeout=timeout)

    def _in_process_embedder(self, model_id: str) -> Embedder:
        try:
            entry = self.serving.served_model(model_id)
        except ModelNotServed as exc:
            raise EmbeddingEndpointError(f"embeddings endpoint of this platform: {exc}") from None

        def embed_batch(texts: list[str], input_type: str) -> np.ndarray:
            try:
                return self.serving.embed_texts(model_id, texts, input_type)
            except (ModelNotServed, ModelInputError) as exc:
                raise EmbeddingEndpointError(f"embeddings of model {model_id!r}: {exc}") from None

        identity = {"kind": "platform", "model_id": model_id, "weights": model_fingerprint(entry.path)}
        if entry.runtime is not None:  # vectors of another runtime differ by rounding: cached apart
            identity["runtime"] = entry.runtime.runtime
        return CallableEmbedder(
            embed_batch, identity=identity, runtime=entry.runtime.metadata() if entry.runtime is not None else None
        )

    def _evaluate(self, job_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        query_embedder, index_embedder = self._embedders(job_id, doc["target"])
        try:
            return self._evaluate_tasks(job_id, doc, query_embedder, index_embedder)
        finally:
            for embedder in (query_embedder, index_embedder):
                if isinstance(embedder, EndpointEmbedder):
                    embedder.close()

    def _evaluate_tasks(
        self, job_id: str, doc: dict[str, Any], query_embedder: Embedder, index_embedder: Embedder
    ) -> dict[str, Any]:
        config, target = doc["config"], doc["target"]
        top_k = target["retriever"]["pipeline"].get("top_k", DEFAULT_TOP_K)
        tasks = config["tasks"]
        task_metrics: dict[str, dict[str, float]] = {}
        task_per_query: dict[str, dict[str, dict[str, float]]] = {}
        task_status: dict[str, Any] = {}
        last_write = [0.0, -1]

        for index, (task_name, task) in enumerate(tasks.items()):

            def progress(fraction: float, message: str, index: int = index, task_name: str = task_name) -> None:
                percent = int(100 * (index + fraction) / len(tasks))
                now = time.monotonic()
                if percent != last_write[1] or now - last_write[0] >= PROGRESS_INTERVAL_S:
                    last_write[:] = [now, percent]
                    self._report_progress(job_id, min(percent, 99), f"{task_name}: {message}", task_status)

            files_url = task["dataset"]["files_url"]
            progress(0.0, f"loading {files_url}")
            beir_root = self.settings.beir_root
            if beir_root is None:  # PlatformSettings resolves it at construction
                raise DatasetNotFound(f"no BEIR root is configured for {files_url}")
            dataset = load_beir_dataset(
                files_url, beir_root, hf_folder=self._hf_folder, max_file_bytes=self.settings.max_dataset_file_bytes
            )
            if self.jobs.should_stop(job_id):
                raise JobCancelled()
            outcome = evaluate_retrieval(
                dataset,
                query_embedder,
                index_embedder,
                list(task["metrics"]),
                top_k,
                cache=self.cache,
                progress=progress,
                should_stop=lambda: self.jobs.should_stop(job_id),
            )
            task_metrics[task_name] = outcome.metrics
            task_per_query[task_name] = outcome.per_query
            task_status[task_name] = {  # the job shows the status word (SDK: TaskStatus), the rest as task_details
                "status": "completed",
                "num_queries": outcome.num_queries,
                "num_docs": outcome.num_docs,
                "top_k": outcome.top_k,
                "corpus_cache_hit": outcome.corpus_cache_hit,
                "search": outcome.search,
                "timings_s": {k: round(v, 3) for k, v in outcome.timings_s.items()},
                "runtime": {"query": query_embedder.runtime, "index": index_embedder.runtime},
            }
        result_id = new_id("evaluation_result")
        result = nemo_results(
            job_id, result_id, f"hf://datasets/evaluation-results/{job_id}", task_metrics, task_per_query
        )
        result.update({"namespace": doc.get("namespace"), "created_at": utc_now(), "task_status": task_status})
        return result

    def _report_progress(self, job_id: str, percent: int, message: str, task_status: dict[str, Any]) -> None:
        self.jobs.check_progress(job_id)  # progress hooks: an injected fault fails or stalls the job here
        self.jobs.update_details(
            job_id, {"progress": percent, "message": message, **task_status_details(task_status)}, unless_cancelled=True
        )  # not over a cancel request's message

    def _hf_folder(self, namespace: str, name: str) -> Path:
        try:
            return self.repos.files_dir("dataset", namespace, name)
        except LookupError as exc:
            raise DatasetNotFound(
                f"Data Store dataset {namespace}/{name} does not exist (upload the BEIR files to it first): {exc}"
            ) from None
