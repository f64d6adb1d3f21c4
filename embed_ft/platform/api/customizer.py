"""Customizer routes (``{NEMO_URL}/v1/customization/...``): targets, configs and fine-tuning jobs.

Bodies are checked for shape here with the v1 contract's models (``nemo/v1/customization.py``: every hyperparameter
bounded, a 422 naming the field); ``services/customization.py`` applies the rules that need the store,
and ``services/training`` runs the jobs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ...nemo.v1.customization import ConfigRequest, JobRequest, TargetPatch, TargetRequest
from ..services.customization import CONFIG_KIND
from ..services.entities import DATASET_KIND
from ..services.model_weights import TARGET_KIND
from .deps import Customization, Listing, Store, paginate

router = APIRouter()

# ---- targets


@router.get("/v1/customization/targets")
def list_targets(store: Store, query: Listing):
    return paginate(query, store.list(TARGET_KIND))


@router.post("/v1/customization/targets")
def create_target(body: TargetRequest, customization: Customization):
    """Register a base model: a local sentence-transformers folder (file:// or absolute model_path) or a Hub id."""
    return customization.create_target(body.model_dump(exclude_none=True))


@router.get("/v1/customization/targets/{namespace}/{name}")
def get_target(namespace: str, name: str, customization: Customization):
    return customization.get_target(f"{namespace}/{name}")


@router.patch("/v1/customization/targets/{namespace}/{name}")
def patch_target(namespace: str, name: str, body: TargetPatch, customization: Customization):
    return customization.patch_target(f"{namespace}/{name}", body.model_dump(exclude_none=True))


@router.delete("/v1/customization/targets/{namespace}/{name}", status_code=204)
def delete_target(namespace: str, name: str, customization: Customization):
    customization.delete_target(f"{namespace}/{name}")
    return Response(status_code=204)


# ---- configs


@router.get("/v1/customization/configs")
def list_configs(store: Store, query: Listing):
    def target(doc: dict) -> dict:
        return store.get(TARGET_KIND, str(doc.get("target"))) or {}

    return paginate(
        query,
        store.list(CONFIG_KIND),
        {  # the SDK's CustomizationConfigFilter fields
            "finetuning_type": "training_options.finetuning_type",
            "training_type": "training_options.training_type",
            "target_name": lambda doc: str(doc.get("target", "")).split("/", 1)[-1],
            "target_base_model": lambda doc: target(doc).get("base_model"),
            "target_enabled": lambda doc: target(doc).get("enabled"),
        },
    )


@router.post("/v1/customization/configs")
def create_config(body: ConfigRequest, customization: Customization):
    """Create a versioned config; a name without ``@vN`` becomes ``name@v1``."""
    return customization.create_config(body.model_dump(exclude_none=True))


@router.get("/v1/customization/configs/{namespace}/{name}")
def get_config(namespace: str, name: str, customization: Customization):
    return customization.get_config(f"{namespace}/{name}")


@router.delete("/v1/customization/configs/{namespace}/{name}", status_code=204)
def delete_config(namespace: str, name: str, customization: Customization):
    customization.delete_config(f"{namespace}/{name}")
    return Response(status_code=204)


# ---- jobs


@router.post("/v1/customization/jobs")
def create_job(body: JobRequest, customization: Customization):
    return customization.create_job(
        {
            **body.model_dump(exclude={"dataset", "hyperparameters", "dataset_parameters"}),
            "dataset": body.dataset if isinstance(body.dataset, str) else body.dataset.model_dump(),
            "hyperparameters": body.hyperparameters.model_dump(exclude_none=True),
            "dataset_parameters": body.dataset_parameters.model_dump() if body.dataset_parameters else None,
        }
    )


def _job_dataset(store: Any, doc: dict) -> list[str]:
    """A job's dataset as ``ns/name`` and as its ``files_url`` (the SDK's ``filter[dataset]``)."""
    dataset = doc.get("dataset") or {}
    if not isinstance(dataset, dict):
        return [str(dataset)]
    ref = f"{dataset.get('namespace')}/{dataset.get('name')}"
    files_url = (store.get(DATASET_KIND, ref) or {}).get("files_url")
    return [ref, files_url] if files_url else [ref]


@router.get("/v1/customization/jobs")
def list_jobs(store: Store, customization: Customization, query: Listing):
    """Filters of the SDK's ``CustomizationJobListFilter`` (no ``custom_fields`` there; any field path works)."""
    hyperparameters = ("batch_size", "epochs", "finetuning_type", "log_every_n_steps", "training_type")
    return paginate(
        query,
        customization.list_jobs(),
        {
            **{key: f"hyperparameters.{key}" for key in hyperparameters},
            "base_model": "config_snapshot.base_model",
            "dataset": lambda doc: _job_dataset(store, doc),
        },
    )


@router.get("/v1/customization/jobs/{job_id}")
def get_job(job_id: str, customization: Customization):
    return customization.get_job(job_id)


@router.get("/v1/customization/jobs/{job_id}/status")
def get_job_status(job_id: str, customization: Customization):
    return customization.job_status(job_id)


@router.post("/v1/customization/jobs/{job_id}/cancel")
def cancel_job(job_id: str, customization: Customization):
    return customization.cancel_job(job_id)


@router.get("/v1/customization/jobs/{job_id}/container-logs")
def get_container_logs(job_id: str, customization: Customization):
    """The SDK's ``JobLogs``: the training worker's stdout/stderr (empty until it starts), the error of a failed job."""
    return customization.container_logs(job_id)
