"""Evaluator routes (``{NEMO_URL}/v1/evaluation/...``): retriever jobs over BEIR tasks, configs and targets.

Bodies are free-form JSON checked by ``services/evaluation/validation.py`` (unknown task type, metric, files_url or
endpoint -> 422 naming it); ``services/evaluation/service.py`` runs the jobs.
"""

from __future__ import annotations

from fastapi import APIRouter, Body

from ..services.evaluation.resources import CONFIG_KIND, TARGET_KIND
from ..services.evaluation.service import JOB_KIND
from .deps import Evaluator, EvaluatorDocs, Listing, Store, paginate

router = APIRouter()


# ---- configs and targets


@router.post("/v1/evaluation/configs", status_code=200)
def create_config(docs: EvaluatorDocs, body: dict = Body(...)):
    return docs.create_named(CONFIG_KIND, body)


@router.get("/v1/evaluation/configs")
def list_configs(store: Store, query: Listing):
    return paginate(query, store.list(CONFIG_KIND))


@router.get("/v1/evaluation/configs/{namespace}/{name}")
def get_config(namespace: str, name: str, docs: EvaluatorDocs):
    return docs.get_named(CONFIG_KIND, namespace, name)


@router.delete("/v1/evaluation/configs/{namespace}/{name}")
def delete_config(namespace: str, name: str, docs: EvaluatorDocs):
    return docs.delete_named(CONFIG_KIND, namespace, name)


@router.post("/v1/evaluation/targets", status_code=200)
def create_target(docs: EvaluatorDocs, body: dict = Body(...)):
    return docs.create_named(TARGET_KIND, body)


@router.get("/v1/evaluation/targets")
def list_targets(store: Store, query: Listing):
    return paginate(query, store.list(TARGET_KIND))


@router.get("/v1/evaluation/targets/{namespace}/{name}")
def get_target(namespace: str, name: str, docs: EvaluatorDocs):
    return docs.get_named(TARGET_KIND, namespace, name)


@router.delete("/v1/evaluation/targets/{namespace}/{name}")
def delete_target(namespace: str, name: str, docs: EvaluatorDocs):
    return docs.delete_named(TARGET_KIND, namespace, name)


# ---- jobs


@router.post("/v1/evaluation/jobs", status_code=200)
def create_job(docs: EvaluatorDocs, body: dict = Body(...)):
    return docs.create_job(body)


@router.get("/v1/evaluation/jobs")
def list_jobs(store: Store, query: Listing):
    return paginate(query, store.list(JOB_KIND))


@router.get("/v1/evaluation/jobs/{job_id}")
def get_job(job_id: str, evaluator: Evaluator):
    return evaluator.get_job(job_id)


@router.get("/v1/evaluation/jobs/{job_id}/status")
def get_job_status(job_id: str, docs: EvaluatorDocs):
    return docs.job_status(job_id)


@router.post("/v1/evaluation/jobs/{job_id}/cancel")
def cancel_job(job_id: str, evaluator: Evaluator):
    return evaluator.cancel(job_id)


@router.delete("/v1/evaluation/jobs/{job_id}")
def delete_job(job_id: str, docs: EvaluatorDocs):
    return docs.delete_job(job_id)


@router.get("/v1/evaluation/jobs/{job_id}/results")
def get_job_results(job_id: str, docs: EvaluatorDocs):
    return docs.job_results(job_id)


# ---- results


@router.get("/v1/evaluation/results")
def list_results(docs: EvaluatorDocs, query: Listing):
    return paginate(query, docs.list_results(), {"job_id": "job"})


@router.get("/v1/evaluation/results/{result_id}")
def get_result(result_id: str, docs: EvaluatorDocs):
    return docs.get_result(result_id)
