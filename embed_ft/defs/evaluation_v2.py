"""The evaluation stage on the v2 profile (NeMo Platform 26.x / nemo-helix): the held-out BEIR set and the BEIR task
sets as filesets, the NIM registered as a model provider behind the inference gateway, one ``retrieve-eval`` job per
task (reattached by its name, derived from the idempotency key), results read into the same `EvaluationResult` and
the same metadata keys as v1 (`evaluation.py`), so the report does not know which profile ran.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from dagster import Failure

from ..formats.beir import beir_files, read_maybe_gz
from ..nemo.status import COMPLETED, job_status
from ..nemo.v2.contract import (
    FLAT_METRICS_RESULT,
    ROW_SCORES_RESULT,
    CreateModelEntityRequest,
)
from ..nemo.v2.evaluation import flat_metrics, per_query_scores, retrieve_eval_request
from ..nemo.v2.files import FilesClient, fileset_ref
from ..nemo.v2.jobs import failure_text, retrieve_eval_jobs
from ..nemo.v2.models import ModelsClient, gateway_provider_url
from ..resources import EvaluatorResource
from ..spec.experiment import ExperimentSpec
from .common import evaluation_metadata, link, stable_hash
from .progress import RemoteProgress
from .remote_jobs import run_remote_job
from .values import Deployment, EvaluationResult

FILESET_URL = re.compile(r"^fileset://(?P<ws>[a-z][a-z0-9\-@.+_]+)/(?P<name>[a-z][a-z0-9\-@.+_]+)/?$")
BEIR_FILESET_PREFIX = "beir-"
PROVIDER_PREFIX = "embed-ft-"


def fileset_url(workspace: str, name: str) -> str:
    """How a fileset is written where v1 writes a Data Store ``files_url``."""
    return f"fileset://{workspace}/{name}"


def retrieve_eval_progress(task: str, job_id: str, doc: dict) -> RemoteProgress:
    """A retrieve-eval job's typed progress: Helix reports no percent, so the task, status and Helix's message."""
    message = str((doc.get("status_details") or {}).get("message") or "").strip()
    return RemoteProgress("evaluation", job_id, job_status(doc), message=f"{task}: {message}" if message else task)


def provider_name(deployment: str) -> str:
    """The gateway provider of one of our NIM deployments (``ns/name`` -> ``embed-ft-name``)."""
    return (PROVIDER_PREFIX + deployment.split("/")[-1].lower())[:63].rstrip("-")


def upload_beir_fileset(files: FilesClient, workspace: str, name: str, folder: Path, split: str = "test") -> bool:
    """Upload the BEIR set in ``folder`` (plain or .gz files) to the fileset ``name`` unless it already holds the
    same files (same paths and sizes). Returns whether anything was uploaded."""
    contents = {path: read_maybe_gz(folder, path) for path in beir_files(split)}
    missing = [path for path, data in contents.items() if data is None]
    if missing:
        raise Failure(f"BEIR set {folder} lacks {missing}")
    files.ensure_fileset(workspace, name, description=f"BEIR set {folder.name} (embed-ft)", purpose="dataset")
    present = files.list_files(workspace, name)
    if all(present.get(path) == len(data or b"") for path, data in contents.items()):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        local = {}
        for path, data in contents.items():
            target = Path(tmp) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data or b"")
            local[path] = target
        files.upload_files(workspace, name, local)
    return True


def task_fileset(files: FilesClient, workspace: str, task_url: str) -> str:
    """The ``workspace/name`` fileset of one evaluation task: ``fileset://ws/name`` as it is; ``file://NAME/`` (a
    BEIR set "preloaded on the evaluator" in v1) uploaded once from ``EMBED_FT_BEIR_ROOT/NAME``."""
    match = FILESET_URL.match(task_url)
    if match:
        return fileset_ref(match.group("ws"), match.group("name"))
    if task_url.startswith("file://"):
        name = task_url.removeprefix("file://").strip("/")
        root = os.environ.get("EMBED_FT_BEIR_ROOT")
        if not root or not (Path(root) / name).is_dir():
            raise Failure(
                f"task {task_url}: on the v2 profile a file:// task is uploaded from EMBED_FT_BEIR_ROOT/{name}"
                f", which does not exist (EMBED_FT_BEIR_ROOT={root!r}); or name a fileset://ws/name task"
            )
        fileset = (BEIR_FILESET_PREFIX + name.lower())[:63]
        upload_beir_fileset(files, workspace, fileset, Path(root) / name)
        return fileset_ref(workspace, fileset)
    raise Failure(
        f"task {task_url}: the v2 profile evaluates filesets (fileset://workspace/name) or local BEIR sets "
        "(file://NAME/), not Data Store repos (hf://)"
    )


def register_nim(evaluator: EvaluatorResource, workspace: str, nim: Deployment) -> str:
    """Register the NIM as a model provider (and its model as a model entity) on the v2 platform; returns the
    gateway's OpenAI-compatible base for it. A NIM deployed on the v2 profile is behind the gateway already
    (`serving_v2.py`: ``nim.provider``); a v1 deployment's NIM routes are added by URL."""
    if nim.provider:
        return nim.nim_url
    http = evaluator.http()
    models = ModelsClient(http)
    provider = provider_name(nim.deployment)
    models.ensure_provider(workspace, provider, nim.nim_url, description=f"embed-ft NIM {nim.deployment}")
    models.ensure_model(
        workspace,
        CreateModelEntityRequest(
            name=provider,
            description=f"{nim.model} served as {nim.served_name}",
            model_providers=[fileset_ref(workspace, provider)],
        ),
    )
    models.wait_for_provider(workspace, provider)
    return gateway_provider_url(evaluator.url(), workspace, provider)


def run_evaluation_v2(
    context,
    spec: ExperimentSpec,
    label: str,
    nim: Deployment,
    tasks: dict[str, str],
    heldout_version: str,
    evaluator: EvaluatorResource,
    workspace: str,
    timeout_s: float,
) -> tuple[EvaluationResult, dict[str, Any], dict[str, Any]]:
    """`evaluation.run_evaluation` on v2: one retrieve-eval job per task, through the inference gateway."""
    config = spec.evaluation
    http = evaluator.http()
    files = FilesClient(http)
    files.ensure_workspace(workspace)
    gateway = register_nim(evaluator, workspace, nim)
    jobs = retrieve_eval_jobs(http, workspace)
    identity = {
        "model": nim.model,
        "tasks": tasks,
        "metrics": list(config.metrics),
        "top_k": config.top_k,
        "heldout_data_version": heldout_version,
        "code_version": "v2-1",
    }
    metrics: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    names: list[str] = []
    started = time.monotonic()
    for task, url in tasks.items():
        dataset = task_fileset(files, workspace, url)
        request = retrieve_eval_request(
            dataset,
            f"{gateway}/v1",
            nim.served_name,
            list(config.metrics),
            config.top_k,
            description=f"embed-ft {label} evaluation of {nim.model} on {task}",
        )
        key = stable_hash(request.spec.model_dump(mode="json"), nim.model, heldout_version, identity["code_version"])

        def submit(request=request, key=key, task=task) -> dict:
            job = jobs.create(request, key)
            context.log.info(f"Submitted retrieve-eval job {job['id']} of {nim.model} on {task}")
            return job

        name, doc = run_remote_job(
            context,
            what=f"{label} retrieve-eval job ({task})",
            key=key,
            find=jobs.find,
            submit=submit,
            fetch=jobs.get,
            cancel=jobs.cancel,
            timeout_s=timeout_s,
            interval_s=spec.remote.poll_interval_s,
            describe=lambda d: f"status={job_status(d)} {(d.get('status_details') or {}).get('message') or ''}",
            progress_of=functools.partial(retrieve_eval_progress, task),
        )
        if job_status(doc) != COMPLETED:
            raise Failure(  # the job's own answer, not a transient error: a retry would only run it again
                f"Evaluation job {name} of {nim.model} on {task} ended {job_status(doc)}: {failure_text(doc)}",
                metadata={"job_id": name, "status": job_status(doc)},
                allow_retries=False,
            )
        metrics[task] = flat_metrics(jobs.download_result(name, FLAT_METRICS_RESULT), list(config.metrics))
        per_query[task] = per_query_scores(jobs.download_result(name, ROW_SCORES_RESULT), list(config.metrics))
        names.append(name)
    queries = {task: len(scores) for task, scores in per_query.items()}
    job_id = ",".join(names)
    value = EvaluationResult(
        model=nim.model, job_id=job_id, tasks=tasks, metrics=metrics, per_query=per_query, queries=queries
    )
    jobs_url = f"{evaluator.url()}{jobs.path}"
    metadata = evaluation_metadata(
        job_id,
        link(jobs_url, f"/{names[0]}/status"),
        link(jobs_url, f"/{names[0]}/results"),
        nim.model,
        time.monotonic() - started,
        tasks,
        per_query,
        metrics,
        queries,
    )
    return value, metadata, identity
