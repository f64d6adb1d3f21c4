"""Evaluation stage: the held-out BEIR set, and BEIR retriever evaluations of the shared base NIM (once) and of each
experiment's NIM (per partition). `report.py` compares them."""

import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue, asset

from ..data.beir import testing_split_to_beir
from ..formats.beir import beir_files
from ..nemo.evaluator import JOBS as EVALUATION_JOBS, beir_task, retriever_config, retriever_target
from ..nemo.status import COMPLETED, job_status
from ..nemo.v2.files import FilesClient
from ..resources import DataStoreResource, EntityStoreResource, EvaluatorResource
from ..spec.experiment import HELDOUT_TASK, EvaluationSpec, ExperimentSpec, task_name
from .backend import GPU_STAGE_CONDITION
from .common import CPU_TAGS, GPU_TAGS, OWNERS, backend_errors_as_failures, evaluation_metadata, link, stable_hash
from .evaluation_v2 import fileset_url, run_evaluation_v2, upload_beir_fileset
from .experiment_spec import StoredSpec, run_spec, used_spec_metadata
from .experiments import EXPERIMENTS
from .progress import RemoteProgress
from .remote_jobs import REMOTE_JOB_RETRY_POLICY, not_retried_when_terminated, run_remote_job
from .significance import per_query_scores, query_counts
from .uploads import ensure_repo, file_sha256, upload_if_changed
from .values import Deployment, EvaluationResult, HeldoutDataset, TripletSplits

EVALUATION_CODE_VERSION = "2"


def evaluation_progress(job_id: str, doc: dict) -> RemoteProgress:
    """An Evaluator job's typed progress: its status, percent done and message (e.g. documents embedded)."""
    details = doc.get("status_details") or {}
    percent = details.get("progress")
    return RemoteProgress(
        "evaluation",
        job_id,
        job_status(doc),
        percent=float(percent) if isinstance(percent, (int, float)) else None,
        message=str(details.get("message") or "").strip(),
    )


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="evaluation",
    code_version=EVALUATION_CODE_VERSION,
    kinds={"nemo", "huggingface"},
    owners=OWNERS,
    tags=CPU_TAGS,
    description="The held-out testing split as a BEIR dataset (queries, corpus of their positives and negatives, "
    "qrels) in the Data Store: the in-domain task the tutorial never evaluated.",
)
@backend_errors_as_failures
def heldout_eval_dataset(
    context: AssetExecutionContext,
    specter_triplets: TripletSplits,
    datastore: DataStoreResource,
    entity_store: EntityStoreResource,
    evaluator: EvaluatorResource,
) -> MaterializeResult:
    used = run_spec(context)
    if evaluator.api_profile() == "v2":
        return heldout_on_v2(used, specter_triplets, evaluator, entity_store.namespace)
    ds = datastore.client()
    repo_id = ensure_repo(ds, entity_store.namespace, used.spec.evaluation.heldout_dataset_name)
    with tempfile.TemporaryDirectory() as tmp:
        counts = testing_split_to_beir(specter_triplets.testing, Path(tmp))
        files = {name: Path(tmp) / name for name in beir_files("test")}
        upload = upload_if_changed(context, ds, repo_id, files, "embed-ft: held-out split as BEIR")
    version = stable_hash(upload["manifest"])[:16]
    value = HeldoutDataset(repo_id=repo_id, files_url=ds.files_url(repo_id), data_version=version)
    metadata = {
        "repo_id": repo_id,
        "files_url": value.files_url,
        "repo_url": link(datastore.url(), f"/v1/hf/api/datasets/{repo_id}/revision/main"),
        **used_spec_metadata(used, "evaluation"),
        "uploaded": upload["uploaded"],
        **{f"count/{k}": float(v) for k, v in dict(counts).items() if isinstance(v, (int, float))},
    }
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(version))


def heldout_on_v2(
    used: StoredSpec, splits: TripletSplits, evaluator: EvaluatorResource, workspace: str
) -> MaterializeResult:
    """`heldout_eval_dataset` on the v2 profile: the same BEIR files in a fileset of the v2 platform."""
    name = used.spec.evaluation.heldout_dataset_name
    files = FilesClient(evaluator.http())
    files.ensure_workspace(workspace)
    with tempfile.TemporaryDirectory() as tmp:
        counts = testing_split_to_beir(splits.testing, Path(tmp))
        manifest = {file: file_sha256(Path(tmp) / file) for file in beir_files("test")}
        uploaded = upload_beir_fileset(files, workspace, name, Path(tmp))
    version = stable_hash(manifest)[:16]
    value = HeldoutDataset(repo_id=f"{workspace}/{name}", files_url=fileset_url(workspace, name), data_version=version)
    metadata = {
        "repo_id": value.repo_id,
        "files_url": value.files_url,
        "repo_url": link(evaluator.url(), files.files_path(workspace, name)),
        **used_spec_metadata(used, "evaluation"),
        "uploaded": uploaded,
        **{f"count/{k}": float(v) for k, v in dict(counts).items() if isinstance(v, (int, float))},
    }
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(version))


def evaluation_tasks(config: EvaluationSpec, heldout: Optional[HeldoutDataset]) -> dict[str, str]:
    tasks = {task_name(url): url for url in config.tasks}
    if config.include_heldout and heldout is not None:
        tasks[HELDOUT_TASK] = heldout.files_url
    return tasks


def run_evaluation(
    context,
    spec: ExperimentSpec,
    label: str,
    nim: Deployment,
    heldout: HeldoutDataset,
    evaluator: EvaluatorResource,
    entity_store: EntityStoreResource,
) -> tuple[EvaluationResult, dict[str, Any], dict[str, Any]]:
    """Run (or reattach to) the Evaluator job of ``nim`` on the configured tasks: (value, metadata, identity).

    The identity (model, tasks, metrics, top_k, held-out data version, code version) is the job's idempotency key:
    the same identity is evaluated once, a second materialization reattaches to the completed job."""
    config = spec.evaluation
    tasks = evaluation_tasks(config, heldout)
    timeout_s = spec.remote.evaluation_timeout_s
    if evaluator.api_profile() == "v2":
        return run_evaluation_v2(
            context, spec, label, nim, tasks, heldout.data_version, evaluator, entity_store.namespace, timeout_s
        )
    ev = evaluator.client()
    task_bodies: dict[str, Any] = {}
    for name, url in tasks.items():
        task_bodies.update(beir_task(url, config.metrics, name))
    eval_config = retriever_config(entity_store.namespace, task_bodies)
    target = retriever_target(nim.nim_url, nim.served_name, config.top_k)
    identity = {
        "model": nim.model,
        "tasks": tasks,
        "metrics": list(config.metrics),
        "top_k": config.top_k,
        "heldout_data_version": heldout.data_version,
        "code_version": EVALUATION_CODE_VERSION,
    }
    key = stable_hash(eval_config, target, nim.model, heldout.data_version, EVALUATION_CODE_VERSION)

    def submit() -> dict:
        job = ev.create_job(eval_config, target, idempotency_key=key)
        context.log.info(f"Submitted evaluation job {job['id']} of {nim.model} on {sorted(tasks)}")
        return job

    started = time.monotonic()
    job_id, doc = run_remote_job(
        context,
        what=f"{label} evaluation job",
        key=key,
        find=ev.find_job,
        submit=submit,
        fetch=ev.get_job,
        cancel=ev.cancel_job,
        timeout_s=timeout_s,
        interval_s=spec.remote.poll_interval_s,
        describe=lambda d: "status={} progress={} {}".format(
            job_status(d),
            (d.get("status_details") or {}).get("progress"),
            (d.get("status_details") or {}).get("message") or "",
        ),
        progress_of=evaluation_progress,
    )
    status = job_status(doc)
    if status != COMPLETED:
        details = doc.get("status_details") or {}
        logs = doc.get("status_logs") or []
        detail = details.get("message") or (logs[-1].get("detail") if logs else None) or "no detail reported"
        raise Failure(f"Evaluation job {job_id} of {nim.model} ended {status}: {detail}", allow_retries=False)
    results = ev.get_results(job_id)
    metrics = ev.parse_metrics(results)
    missing = [t for t in tasks if t not in metrics]
    if missing:
        raise Failure(
            f"Evaluation job {job_id} returned no results for task(s) {missing}; got {sorted(metrics)}",
            allow_retries=False,
        )
    per_query = {t: scores for t, scores in per_query_scores(results).items() if t in tasks}
    queries = {**query_counts(results), **{t: len(scores) for t, scores in per_query.items()}}
    value = EvaluationResult(
        model=nim.model, job_id=job_id, tasks=tasks, metrics=metrics, per_query=per_query, queries=queries
    )
    metadata = evaluation_metadata(
        job_id,
        link(evaluator.url(), f"{EVALUATION_JOBS}/{job_id}"),
        link(evaluator.url(), f"{EVALUATION_JOBS}/{job_id}/results"),
        nim.model,
        time.monotonic() - started,
        tasks,
        per_query,
        metrics,
        queries,
    )
    return value, metadata, identity


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="evaluation",
    code_version=EVALUATION_CODE_VERSION,
    kinds={"nemo"},
    owners=OWNERS,
    tags=GPU_TAGS,
    pool="nemo_evaluator",
    retry_policy=REMOTE_JOB_RETRY_POLICY,
    description="The base model's evaluation on the BEIR tasks and the held-out split, run once per (base model, task "
    "set, held-out data, code version) and shared by every experiment's report. Its data version is that identity.",
)
@backend_errors_as_failures
@not_retried_when_terminated
def baseline_evaluation(
    context: AssetExecutionContext,
    baseline_nim: Deployment,
    heldout_eval_dataset: HeldoutDataset,
    evaluator: EvaluatorResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    used = run_spec(context)
    value, metadata, identity = run_evaluation(
        context, used.spec, "baseline", baseline_nim, heldout_eval_dataset, evaluator, entity_store
    )
    version = stable_hash(identity)[:16]
    metadata.update(used_spec_metadata(used, "evaluation"))
    metadata["baseline_identity"] = MetadataValue.json({**identity, "data_version": version})
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(version))


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="evaluation",
    code_version=EVALUATION_CODE_VERSION,
    partitions_def=EXPERIMENTS,
    kinds={"nemo"},
    owners=OWNERS,
    tags=GPU_TAGS,
    pool="nemo_evaluator",
    retry_policy=REMOTE_JOB_RETRY_POLICY,
    description="One experiment's NIM evaluated on its spec's tasks (the baseline evaluation of the same run uses "
    "the same spec).",
)
@backend_errors_as_failures
@not_retried_when_terminated
def fine_tuned_evaluation(
    context: AssetExecutionContext,
    fine_tuned_nim: Deployment,
    heldout_eval_dataset: HeldoutDataset,
    evaluator: EvaluatorResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    used = run_spec(context)
    value, metadata, _ = run_evaluation(
        context, used.spec, "fine-tuned", fine_tuned_nim, heldout_eval_dataset, evaluator, entity_store
    )
    metadata.update(used_spec_metadata(used, "evaluation"))
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(stable_hash(value.metrics)[:16]))
