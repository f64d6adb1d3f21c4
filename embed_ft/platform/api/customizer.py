"""Customizer routes (``{NEMO_URL}/v1/customization/...``): targets, configs and fine-tuning jobs.

Bodies are checked for shape here (pydantic); ``services/customization.py`` applies the rules that need the store,
and ``services/training`` runs the jobs.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from ..services.customization import CONFIG_KIND
from ..services.model_weights import TARGET_KIND
from ..services.training.service import JOB_KIND
from .deps import Customization, Listing, Store, paginate

router = APIRouter()

OPTIMIZERS = ("adam_with_cosine_annealing", "adam_with_flat_lr", "adamw_with_cosine_annealing", "adamw_with_flat_lr")


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    base_model: str | None = None
    enabled: bool = True
    model_path: str | None = None
    model_uri: str | None = None
    num_parameters: int | None = Field(None, ge=0)
    precision: str | None = None
    description: str | None = None


class TargetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    description: str | None = None
    num_parameters: int | None = Field(None, ge=0)
    precision: str | None = None
    custom_fields: dict[str, Any] | None = None


class TrainingOption(BaseModel):
    model_config = ConfigDict(extra="allow")
    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["lora", "lora_merged", "all_weights", "p_tuning"] = "all_weights"
    num_gpus: int = Field(1, ge=0)
    num_nodes: int = Field(1, ge=1)
    micro_batch_size: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    use_sequence_parallel: bool = False


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    target: str
    training_options: list[TrainingOption] = Field(default_factory=lambda: [TrainingOption()], min_length=1)
    training_precision: str | None = None
    max_seq_length: int | None = Field(None, ge=1)
    description: str | None = None
    project: str | None = None
    custom_fields: dict[str, Any] | None = None


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str
    name: str


class Hyperparameters(BaseModel):
    # Unknown keys are refused: a typo ("learning_rte") must not silently train with the default.
    model_config = ConfigDict(extra="forbid")
    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["lora", "lora_merged", "all_weights", "p_tuning"] = "all_weights"
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(5e-6, gt=0)
    max_steps: int | None = Field(None, ge=-1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float | None = Field(None, ge=0, lt=1)
    adam_beta2: float | None = Field(None, ge=0, lt=1)
    seed: int = Field(42, ge=0)
    val_check_interval: float | None = Field(None, gt=0)
    log_every_n_steps: int | None = Field(None, ge=1)
    min_learning_rate: float | None = Field(None, ge=0)
    optimizer: Literal[OPTIMIZERS] | None = None  # type: ignore[valid-type]
    max_seq_length: int | None = Field(None, ge=1)
    # Method-specific blocks of the NeMo API, accepted and stored (all_weights training reads none of them).
    sft: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    p_tuning: dict[str, Any] | None = None


class DatasetParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    num_hard_negatives: int | None = Field(None, ge=0)
    negative_sample_strategy: Literal["first", "random"] = "first"
    in_batch_negatives: bool = True


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: str
    dataset: DatasetRef | str
    hyperparameters: Hyperparameters
    output_model: str | None = None
    name: str | None = None
    namespace: str | None = None
    description: str | None = None
    project: str | None = None
    dataset_parameters: DatasetParameters | None = None
    integrations: list[dict[str, Any]] | None = None
    custom_fields: dict[str, Any] | None = None
    ownership: dict[str, Any] | None = None


# ---- targets


@router.get("/v1/customization/targets")
def list_targets(store: Store, query: Listing):
    return paginate(query, store.list(TARGET_KIND))


@router.post("/v1/customization/targets")
def create_target(body: TargetIn, customization: Customization):
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
    return paginate(query, store.list(CONFIG_KIND))


@router.post("/v1/customization/configs")
def create_config(body: ConfigIn, customization: Customization):
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
def create_job(body: JobIn, customization: Customization):
    return customization.create_job({
        **body.model_dump(exclude={"dataset", "hyperparameters", "dataset_parameters"}),
        "dataset": body.dataset if isinstance(body.dataset, str) else body.dataset.model_dump(),
        "hyperparameters": body.hyperparameters.model_dump(exclude_none=True),
        "dataset_parameters": body.dataset_parameters.model_dump() if body.dataset_parameters else None,
    })


@router.get("/v1/customization/jobs")
def list_jobs(store: Store, query: Listing):
    return paginate(query, store.list(JOB_KIND))


@router.get("/v1/customization/jobs/{job_id}")
def get_job(job_id: str, customization: Customization):
    return customization.get_job(job_id)


@router.get("/v1/customization/jobs/{job_id}/status")
def get_job_status(job_id: str, customization: Customization):
    return customization.job_status(job_id)


@router.post("/v1/customization/jobs/{job_id}/cancel")
def cancel_job(job_id: str, customization: Customization):
    return customization.cancel_job(job_id)


@router.get("/v1/customization/jobs/{job_id}/container-logs", response_class=PlainTextResponse)
def get_container_logs(job_id: str, customization: Customization):
    """The training worker's stdout/stderr (empty until the worker starts)."""
    return customization.container_log(job_id)
