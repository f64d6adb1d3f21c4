"""The Customizer's job service: runs customization jobs one at a time, each in a spawned worker process.

The platform process owns the job documents; the worker (``worker.py``) owns torch. A separate process (not a
thread) keeps the API responsive, lets cancel kill training within seconds, and turns a crash of torch into a
``failed`` job instead of a dead platform. The queue, the status writes and restart recovery are the shared
``JobRunner``'s.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from embed_ft.formats.nemo_jsonl import TripletFileError
from embed_ft.nemo.status import CANCELLED, CANCELLING, COMPLETED, CREATED, FAILED, PENDING, RUNNING

from ...settings import PlatformSettings
from ...store import EntityStore
from ..entities import DATASET_KIND, register_model
from ..errors import NotFoundError
from ..jobs import JobAborted, JobRunner
from ..model_weights import ModelNotFound, resolve_model_path, split_model_ref
from ..repo_store import RepoStore
from .data import TRAINING_SPLIT, VALIDATION_SPLIT, TrainingDataError, choose_num_negatives, read_split, split_files
from .worker import run_training_worker, worker_threads

log = logging.getLogger("embed_ft.platform.training")

JOB_KIND = "customization_job"
PROGRESS_POLL_S = 0.25
TERMINATE_GRACE_S = 5.0
ELAPSED_UPDATE_S = 2.0


def status_details_from_progress(progress: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """The worker's progress file -> the fields of ``GET .../jobs/{id}/status`` (NeMo shape)."""
    train = [{"step": p["step"], "value": p["value"]} for p in progress.get("train_loss", [])]
    val = [{"step": p["step"], "value": p["value"]} for p in progress.get("val_loss", [])]
    best_epoch = None
    if progress.get("val_loss"):
        best = min(progress["val_loss"], key=lambda p: p["value"])
        best_epoch = max(0, math.ceil(best.get("epoch", 0)) - 1)
    return {
        "percentage_done": progress.get("percentage_done", 0.0),
        "epochs_completed": progress.get("epochs_completed", 0),
        "steps_completed": progress.get("steps_completed", 0),
        "steps_per_epoch": progress.get("steps_per_epoch"),
        "elapsed_time": round(elapsed, 3),
        "train_loss": train[-1]["value"] if train else None,
        "val_loss": val[-1]["value"] if val else None,
        "best_epoch": best_epoch,
        "metrics": {"keys": ["train_loss", "val_loss"], "metrics": {"train_loss": train, "val_loss": val}},
    }


def empty_status_details() -> dict[str, Any]:
    return status_details_from_progress({}, 0.0)


class CustomizationTrainer:
    """Runs customization jobs one at a time, each in a spawned worker process; the others wait as pending."""

    def __init__(self, settings: PlatformSettings, store: EntityStore, repos: RepoStore) -> None:
        self.settings = settings
        self.store = store
        self.repos = repos
        self.jobs = JobRunner(store, JOB_KIND, "customization job", log_status=False)
        self._process: multiprocessing.process.BaseProcess | None = None
        # Fetches a v2 job's filesets (``doc["v2_dataset"]``) into a folder; set by the context (``v2_filesets``).
        self.fetch_v2_dataset: Callable[[dict[str, Any], Path], None] = _no_v2_files
        self._last_clock_update = 0.0

    # ---- the service's API

    def start(self) -> None:
        self.jobs.start(self._execute)

    def submit(self, job_id: str) -> None:
        self.jobs.set_status(job_id, PENDING, "TrainingJobPending", "Waiting for the training worker.")
        self.jobs.submit(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Pending -> cancelled at once; running -> cancelling, and the monitor ends the worker."""
        with self.jobs.lock:
            doc = self._job(job_id)
            status = doc["status"]
            if status in (CREATED, PENDING):
                self.jobs.request_cancel(job_id)
                return (
                    self._finish(job_id, CANCELLED, "TrainingJobCancelled", "Cancelled before training started.") or doc
                )
            if status in (RUNNING, CANCELLING):
                self.jobs.request_cancel(job_id)
                cancelling = self.jobs.set_status(
                    job_id, CANCELLING, "TrainingJobCancelling", "Stopping the training worker."
                )
                return cancelling or doc
        return doc

    def _job(self, job_id: str) -> dict[str, Any]:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None:
            raise NotFoundError(f"customization job {job_id} not found")
        return doc

    def shutdown(self) -> None:
        def fail_abandoned(job_id: str, doc: dict[str, Any]) -> None:
            self._finish(
                job_id,
                FAILED,
                "PlatformStopped",
                f"The platform stopped while this job was {doc['status']}. Submit it again.",
            )

        def stop_worker() -> None:
            process = self._process
            if process is not None and process.is_alive():
                _stop_process(process)

        self.jobs.stop(TERMINATE_GRACE_S * 3, fail_abandoned, interrupt=stop_worker)

    # ---- running one job

    def _finish(
        self,
        job_id: str,
        status: str,
        message: str,
        detail: str | None,
        details: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        return self.jobs.set_status(
            job_id, status, message, detail, details={**(details or {}), "status": status}, **fields
        )

    def _execute(self, job_id: str) -> None:
        try:
            self._run_job(job_id)
        except Exception as exc:  # keep the service alive for the next job
            log.exception("customization job %s failed in the platform", job_id)
            self._finish(job_id, FAILED, "TrainingJobFailed", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._process = None

    def _prepare(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Everything the worker needs, checked here first so that bad data fails the job without a worker."""
        job_id = doc["id"]
        dataset = doc["dataset"]
        dataset_label = f"{dataset['namespace']}/{dataset['name']}"
        if doc.get("v2_dataset"):  # a v2 automodel job: its filesets, fetched into the job's folder
            repo_dir = self.settings.jobs_dir / job_id / "dataset"
            shutil.rmtree(repo_dir, ignore_errors=True)
            self.fetch_v2_dataset(doc["v2_dataset"], repo_dir)
        else:
            repo_dir = self._dataset_files_dir(dataset["namespace"], dataset["name"])
        train_files = split_files(repo_dir, TRAINING_SPLIT)
        if not train_files:
            raise TrainingDataError(f"dataset {dataset_label} has no training file ({TRAINING_SPLIT}/*.jsonl)")
        train_rows = read_split(repo_dir, TRAINING_SPLIT, dataset_label)
        val_rows = read_split(repo_dir, VALIDATION_SPLIT, dataset_label)
        requested = (doc.get("dataset_parameters") or {}).get("num_hard_negatives")
        config = doc["config_snapshot"]
        target = config["target"]
        base_model_path = resolve_model_path(self.store, f"{target['namespace']}/{target['name']}")
        job_dir = self.settings.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        hp = doc["hyperparameters"]
        return {
            "job_id": job_id,
            "job_dir": str(job_dir),
            "dataset_dir": str(repo_dir),
            "dataset_label": dataset_label,
            "base_model_path": str(base_model_path),
            "output_dir": str(self.settings.models_dir / job_id),
            "progress_path": str(job_dir / "progress.json"),
            "result_path": str(job_dir / "result.json"),
            "log_path": str(job_dir / "container.log"),
            "hyperparameters": hp,
            "dataset_parameters": doc.get("dataset_parameters") or {},
            "max_seq_length": hp.get("max_seq_length") or config.get("max_seq_length"),
            "precision": config.get("training_precision") or target.get("precision"),
            "threads": worker_threads(),
            "_counts": (len(train_rows), len(val_rows), choose_num_negatives(train_rows, requested)),
        }

    def _run_job(self, job_id: str) -> None:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None or doc["status"] != PENDING:
            return  # cancelled (or deleted) while it waited
        try:
            spec = self._prepare(doc)
        except (TrainingDataError, TripletFileError, ModelNotFound, OSError, LookupError) as exc:
            self._finish(job_id, FAILED, "TrainingJobFailed", str(exc))
            return
        n_train, n_val, n_neg = spec.pop("_counts")
        for stale in ("progress_path", "result_path"):
            Path(spec[stale]).unlink(missing_ok=True)
        started_at = time.monotonic()
        with self.jobs.lock:
            if self.jobs.cancel_requested(job_id) or self._job(job_id)["status"] != PENDING:
                return
            self.jobs.set_status(
                job_id,
                RUNNING,
                "TrainingJobRunning",
                f"Training on {n_train} rows ({n_val} validation rows, {n_neg} hard negative(s) per row).",
                details={**empty_status_details(), "status": RUNNING},
            )
            process = multiprocessing.get_context("spawn").Process(
                target=run_training_worker, args=(spec,), name=f"train-{job_id}", daemon=True
            )
            process.start()
            self._process = process
        self._monitor(job_id, process, spec, started_at)

    def _fold_progress(self, job_id: str, spec: dict[str, Any], started_at: float, last_mtime: int) -> int:
        path = Path(spec["progress_path"])
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime == last_mtime:
            # Nothing new from the worker; still move the clock now and then (each update is a durable write).
            if time.monotonic() - self._last_clock_update >= ELAPSED_UPDATE_S:
                self._last_clock_update = time.monotonic()
                self.jobs.update_details(job_id, {"elapsed_time": round(time.monotonic() - started_at, 3)})
            return last_mtime
        try:
            progress = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return last_mtime
        doc = self._job(job_id)
        details = {**status_details_from_progress(progress, time.monotonic() - started_at), "status": doc["status"]}
        self.jobs.update_details(job_id, details)
        return mtime

    def _monitor(self, job_id: str, process: Any, spec: dict[str, Any], started_at: float) -> None:
        last_mtime = 0
        try:
            while process.is_alive():
                if self.jobs.should_stop(job_id):
                    _stop_process(process)
                    break
                process.join(PROGRESS_POLL_S)
                if process.is_alive():
                    self.jobs.check_progress(job_id)  # progress hooks: an injected fault aborts the job here
                last_mtime = self._fold_progress(job_id, spec, started_at, last_mtime)
        except JobAborted as exc:
            _stop_process(process)
            self._finish(job_id, FAILED, "TrainingJobFailed", str(exc))
            return
        process.join(TERMINATE_GRACE_S)
        last_mtime = self._fold_progress(job_id, spec, started_at, last_mtime)
        if self.jobs.stopping and not self.jobs.cancel_requested(job_id):
            return  # shutdown() marks it
        if self.jobs.cancel_requested(job_id):
            shutil.rmtree(spec["output_dir"], ignore_errors=True)
            self._finish(job_id, CANCELLED, "TrainingJobCancelled", "Cancelled by request; the worker was stopped.")
            return
        result_path = Path(spec["result_path"])
        result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
        if result is None or result.get("status") != COMPLETED:
            error = (result or {}).get("error") or (
                f"the training worker exited with code {process.exitcode} without a result; "
                f"last log lines: {_log_tail(Path(spec['log_path']))}"
            )
            self._finish(job_id, FAILED, "TrainingJobFailed", error)
            return
        self._register_output(job_id, result)

    def _register_output(self, job_id: str, result: dict[str, Any]) -> None:
        doc = self._job(job_id)
        ns, name, version = split_model_ref(doc["output_model"])
        target = doc["config_snapshot"]["target"]
        register_model(
            self.store,
            ns,
            f"{name}@{version}" if version else name,  # v2 outputs are unversioned model entities
            target.get("base_model"),
            Path(result["output_dir"]),
            description=doc.get("description") or f"Fine-tuned by customization job {job_id}",
            peft={"finetuning_type": doc["hyperparameters"].get("finetuning_type", "all_weights")},
            customization_job_id=job_id,
            custom_fields=doc.get("custom_fields") or {},
        )
        self._finish(
            job_id,
            COMPLETED,
            "TrainingJobCompleted",
            f"Model saved and registered as {doc['output_model']} ({result['global_step']} steps, "
            f"final train loss {result['train_loss']:.4f}).",
            details={"percentage_done": 100.0},
        )

    def _dataset_files_dir(self, namespace: str, name: str) -> Path:
        """The Data Store folder holding the files of the Entity Store dataset ``namespace/name``.

        The dataset's ``files_url`` must be ``hf://datasets/<ns>/<name>`` (this platform's Data Store).
        """
        doc = self.store.get(DATASET_KIND, f"{namespace}/{name}")
        if doc is None:
            raise LookupError(f"dataset {namespace}/{name} is not in the Entity Store")
        files_url = doc.get("files_url") or f"hf://datasets/{namespace}/{name}"
        prefix = "hf://datasets/"
        if not files_url.startswith(prefix) or files_url[len(prefix) :].strip("/").count("/") != 1:
            raise LookupError(
                f"dataset {namespace}/{name} has files_url {files_url!r}; the local platform trains on "
                "'hf://datasets/<namespace>/<name>' repos of its own Data Store"
            )
        repo_ns, repo_name = files_url[len(prefix) :].strip("/").split("/")
        folder = self.repos.files_dir("dataset", repo_ns, repo_name)
        if not folder.is_dir():
            raise LookupError(
                f"dataset {namespace}/{name}: the Data Store has no repo {repo_ns}/{repo_name} ({files_url})"
            )
        return folder


def _no_v2_files(source: dict[str, Any], dest: Path) -> None:
    raise TrainingDataError("this platform reads no v2 filesets")


def _stop_process(process: Any) -> None:
    """SIGTERM, then SIGKILL if the worker has not exited within the grace period."""
    process.terminate()
    process.join(TERMINATE_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join(TERMINATE_GRACE_S)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
