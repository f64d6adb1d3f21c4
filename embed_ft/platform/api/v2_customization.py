"""NeMo Platform v2 Customizer routes: ``/apis/customization/v2/workspaces/{workspace}/automodel/jobs``.

Bodies are validated by the v2 wire contract (``embed_ft.nemo.v2.contract``, the models our v2 clients build);
answers are Helix's job shapes (``JobResponse``, ``JobStatusResponse``, the list envelope). ``services/automodel.py``
applies the rules that need the store and the Files service, and the platform's trainer runs the jobs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from embed_ft.nemo.v2.contract import (
    CUSTOMIZATION,
    AutomodelJobRequest,
    JobResponse,
    JobResult,
    JobStatusResponse,
    workspace_path,
)

from ..services.automodel import OUTPUT_RESULT, AutomodelService
from ..services.errors import NotFoundError
from .deps import Context, Listing, answer, answer_page

router = APIRouter()
JOBS = workspace_path(CUSTOMIZATION, "{workspace}", "automodel", "jobs")
STATUS_FIELDS = set(JobStatusResponse.model_fields)


def _automodel(ctx: Context) -> AutomodelService:
    return ctx.automodel


Automodel = Annotated[AutomodelService, Depends(_automodel)]


@router.post(JOBS, status_code=201)
def create_automodel_job(workspace: str, body: AutomodelJobRequest, automodel: Automodel):
    """Create (409 when a job of this name exists in the workspace: a retry finds it by name)."""
    return answer(JobResponse, automodel.create(workspace, body))


@router.get(JOBS)
def list_automodel_jobs(workspace: str, automodel: Automodel, query: Listing):
    """The v2 list envelope; ``filter[name]``, ``filter[status]``, ``filter[spec.<path>]``, ``sort=[-]created_at``."""
    return answer_page(query, JobResponse, automodel.list(workspace))


@router.get(JOBS + "/{name}")
def get_automodel_job(workspace: str, name: str, automodel: Automodel):
    return answer(JobResponse, automodel.get(workspace, name))


@router.get(JOBS + "/{name}/status")
def get_automodel_job_status(workspace: str, name: str, automodel: Automodel):
    doc = automodel.get(workspace, name)
    return answer(JobStatusResponse, {k: v for k, v in doc.items() if k in STATUS_FIELDS})


@router.post(JOBS + "/{name}/cancel")
def cancel_automodel_job(workspace: str, name: str, automodel: Automodel):
    """Pending -> cancelled at once; active -> cancelling, then cancelled. A job that ended answers 409."""
    return answer(JobResponse, automodel.cancel(workspace, name))


@router.delete(JOBS + "/{name}", status_code=204)
def delete_automodel_job(workspace: str, name: str, automodel: Automodel):
    """An ended job is forgotten (its output model stays); an active one answers 409."""
    automodel.delete(workspace, name)


@router.get(JOBS + "/{name}/results")
def list_automodel_job_results(workspace: str, name: str, request: Request, automodel: Automodel):
    """A completed job has one result, ``output-model``: its output model entity (download: JSON)."""
    output = automodel.output(workspace, name)
    results = []
    if output is not None:
        result = JobResult(name=OUTPUT_RESULT, job=name, download_url=f"{request.url}/{OUTPUT_RESULT}/download")
        results.append(result.model_dump(mode="json", exclude_none=True))
    return {"data": results}


@router.get(JOBS + "/{name}/results/{result}/download")
def download_automodel_job_result(workspace: str, name: str, result: str, automodel: Automodel):
    output = automodel.output(workspace, name) if result == OUTPUT_RESULT else None
    if output is None:
        raise NotFoundError(f"automodel job {workspace}/{name} has no result {result!r}")
    return JSONResponse(output)
