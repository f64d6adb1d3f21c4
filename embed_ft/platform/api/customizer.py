"""Customizer routes (``{NEMO_URL}/v1/customization/...``): targets, configs and fine-tuning jobs.

Bodies are checked for shape here (pydantic); ``services/customization.py`` applies the rules that need the store,
and ``services/training`` runs the jobs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ...profiles import LOCAL
from ..services.customization import CONFIG_KIND
from ..services.entities import DATASET_KIND
from ..services.model_weights import TARGET_KIND
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
    finetuning_type: Literal["lora", "lora_merged", "all_weights"] = "all_weights"
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


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


# Hyperparameter values: finite numbers (no NaN/Infinity, no "inf" strings), never booleans; integers are strict.
Finite = Annotated[float, BeforeValidator(_not_a_boolean), Field(allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True)]
MAX_STEPS = 1_000_000


class LoraParameters(BaseModel):
    """``hyperparameters.lora`` (SDK 1.5 ``LoraParameters``), trained by PEFT here (``services/training/lora.py``)."""

    model_config = ConfigDict(extra="forbid")
    adapter_dim: Count = Field(8, ge=1, le=1024)
    alpha: Count = Field(16, ge=1, le=4096)
    adapter_dropout: Finite | None = Field(None, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, min_length=1)


class Hyperparameters(BaseModel):
    """Every value is bounded here, before anything is stored: a job the worker cannot run is a 422 naming the
    field and its bounds, not a job that fails (or runs for ever) later. ``weight_decay`` has no upper bound
    (any finite value trains); a job whose loss becomes non-finite fails ("loss became NaN at step N")."""

    # Unknown keys are refused: a typo ("learning_rte") must not silently train with the default.
    model_config = ConfigDict(extra="forbid")
    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["lora", "lora_merged", "all_weights"] = "all_weights"
    epochs: Count = Field(1, ge=1, le=1000)
    # The local platform's server-side defaults are the local backend profile's (embed_ft/profiles.py).
    batch_size: Count = Field(LOCAL.batch_size, ge=1, le=4096)
    learning_rate: Finite = Field(LOCAL.learning_rate, gt=0, le=1)
    max_steps: Count | None = Field(None, ge=-1, le=MAX_STEPS)
    warmup_steps: Count = Field(0, ge=0, le=MAX_STEPS)
    weight_decay: Finite = Field(0.0, ge=0)
    adam_beta1: Finite | None = Field(None, ge=0, lt=1)
    adam_beta2: Finite | None = Field(None, ge=0, lt=1)
    seed: Count = Field(42, ge=0, le=2**32 - 1)
    val_check_interval: Finite | None = Field(None, gt=0, le=MAX_STEPS)
    log_every_n_steps: Count | None = Field(None, ge=1, le=MAX_STEPS)
    min_learning_rate: Finite | None = Field(None, ge=0, le=1)
    optimizer: Literal[OPTIMIZERS] | None = None  # type: ignore[valid-type]
    max_seq_length: Count | None = Field(None, ge=1, le=8192)
    # Method-specific blocks of the NeMo API: ``lora`` configures the lora/lora_merged adapters; ``sft`` is stored.
    sft: dict[str, Any] | None = None
    lora: LoraParameters | None = None


class DatasetParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    num_hard_negatives: Count | None = Field(None, ge=0, le=1000)
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
