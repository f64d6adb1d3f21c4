"""Evaluator routes (``{NEMO_URL}/v1/evaluation/...``): retriever jobs over BEIR tasks, configs and targets.

Bodies must parse as the v1 contract's models (``nemo/v1/evaluation.py``); where one does not, the evaluator's own
checks (``services/evaluation/validation.py``: unknown task type, metric, files_url or endpoint) name the problem
first, in their words, else the contract's message does (422 naming the field). The service checks again what a
type cannot say (known metrics, reachable BEIR sets, stored references); ``services/evaluation/service.py`` runs
the jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ValidationError

from ...nemo.v1.evaluation import JobRequest, RetrieverConfig, RetrieverTarget
from ..services.errors import InvalidInputError
from ..services.evaluation.resources import CONFIG_KIND, TARGET_KIND
from ..services.evaluation.service import JOB_KIND
from ..services.evaluation.validation import validate_config, validate_target
from .deps import Evaluator, EvaluatorDocs, Listing, Store, paginate
from .errors import validation_message

router = APIRouter()


def contract_checked(model: type[BaseModel], body: Any, named: dict[str | None, Callable[[Any], Any]]) -> Any:
    """``body``, once it parses as the contract's ``model``. If it does not, the evaluator's checks of its inline
    parts (``named``: a key of the body, or None for the whole body) raise their own message first."""
    if not isinstance(body, dict):
        return body  # the service answers "must be a JSON object"
    try:
        model.model_validate(body)
    except ValidationError as exc:
        for key, check in named.items():
            part = body if key is None else body.get(key)
            if isinstance(part, dict):
                check(part)
        raise InvalidInputError(None, validation_message(exc)) from None
    return body


# ---- configs and targets


@router.post("/v1/evaluation/configs", status_code=200)
def create_config(docs: EvaluatorDocs, body: dict = Body(...)):
    return docs.create_named(CONFIG_KIND, contract_checked(RetrieverConfig, body, {None: validate_config}))


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
    return docs.create_named(TARGET_KIND, contract_checked(RetrieverTarget, body, {None: validate_target}))


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
    checks: dict[str | None, Callable[[Any], Any]] = {"config": validate_config, "target": validate_target}
    return docs.create_job(contract_checked(JobRequest, body, checks))


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
