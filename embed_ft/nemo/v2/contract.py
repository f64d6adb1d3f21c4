"""The NeMo Platform v2 wire contract (NVIDIA NeMo Platform 26.x; its open-source server `nemo-helix` 0.8.1): paths
and typed request/response models, written once for this API generation.

The clients in ``embed_ft.nemo.v2`` build requests with these models and parse answers into them; the embedded
platform's v2 routes validate with the same models; `embed_ft_tests/test_helix_v2.py` checks every request model
against the OpenAPI document of a real, locally started Helix (each field we send exists there, each required field
is ours too). Requests forbid unknown fields (a typo fails here, not on the server); responses keep them.
Where a field comes from: Helix's `/openapi.json` (0.8.1) and, for automodel jobs, `nemo_automodel_plugin.schema`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..wire import Pagination as Pagination, Response as Response  # shared with v1

# Names of workspaces, filesets, models, providers, jobs, deployments: Helix's one pattern.
NAME_PATTERN = r"^[a-z](?!.*--)[a-z0-9\-@.+_]{1,62}(?<!-)$"
NAME_MAX = 63
_NAME = re.compile(NAME_PATTERN)  # look-arounds: Python's re, not pydantic-core's regex engine


def _check_name(value: str) -> str:
    if len(value) > NAME_MAX or not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a v2 name: 2-63 characters, starting with a lower-case letter, then "
            "lower-case letters, digits and - @ . + _ (no '--', not ending with '-')"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]

ENTITIES = "/apis/entities/v2"
FILES = "/apis/files/v2"
MODELS = "/apis/models/v2"
GATEWAY = "/apis/inference-gateway/v2"
JOBS = "/apis/jobs/v2"
EVALS = "/apis/evals/v2"
CUSTOMIZATION = "/apis/customization/v2"


def workspace_path(service: str, workspace: str, *rest: str) -> str:
    """``{service}/workspaces/{workspace}/...`` with every segment URL-quoted by the caller's HTTP layer."""
    return "/".join([service, "workspaces", workspace, *rest])


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        """The JSON body: fields left at None are not sent (the server applies its own defaults)."""
        return self.model_dump(mode="json", exclude_none=True)


T = TypeVar("T")


class Page(Response, Generic[T]):
    """The list envelope: ``{"data": [...], "pagination": {...}, "sort": ...}`` (file listings carry only data)."""

    data: list[T]
    pagination: Pagination | None = None
    sort: str | None = None


# --- Entities: workspaces --------------------------------------------------------------------------------------
class WorkspaceInput(Request):
    name: Name
    description: str | None = None


class Workspace(Response):
    id: str | None = None
    name: str


# --- Files: filesets and their files ---------------------------------------------------------------------------
FilesetPurpose = Literal["generic", "dataset", "model"]


class CreateFilesetRequest(Request):
    name: Name
    description: str | None = Field(default=None, max_length=255)
    project: str | None = None
    purpose: FilesetPurpose | None = None
    custom_fields: dict[str, Any] | None = None


class Fileset(Response):
    id: str | None = None
    name: str
    workspace: str
    purpose: str | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)


class FileEntry(Response):
    path: str
    size: int | None = None
    file_ref: str | None = None
    file_url: str | None = None


# --- Models: model entities and providers; the inference gateway -----------------------------------------------
class CreateModelEntityRequest(Request):
    name: Name
    description: str | None = Field(default=None, max_length=1000)
    fileset: str | None = None
    base_model: str | None = None
    finetuning_type: Literal["all_weights", "lora", "lora_merged"] | None = None
    model_providers: list[str] | None = None
    custom_fields: dict[str, Any] | None = None


class ModelEntity(Response):
    id: str | None = None
    name: str
    workspace: str
    fileset: str | None = None
    base_model: str | None = None
    custom_fields: dict[str, Any] | None = None


class CreateModelProviderRequest(Request):
    name: Name
    host_url: str = Field(max_length=2048)
    description: str | None = Field(default=None, max_length=1000)
    api_key_secret_name: str | None = None
    enabled_models: list[str] | None = None


class ModelProvider(Response):
    id: str | None = None
    name: str
    workspace: str
    host_url: str
    served_models: list[Any] = Field(default_factory=list)
    status: str | None = None


# --- Jobs (every kind): statuses, results ----------------------------------------------------------------------
# HelixJobStatus, lower case; the terminal three are completed, error, cancelled (`nemo/status.py` reads them).
JobStatus = Literal[
    "created", "pending", "active", "cancelled", "cancelling", "error", "completed", "paused", "pausing", "resuming"
]


class JobStatusResponse(Response):
    """``GET .../jobs/{name}`` and ``.../status``: the job's status, details and, on error, ``error_details``."""

    id: str | None = None
    name: str
    status: str | None = None
    status_details: dict[str, Any] = Field(default_factory=dict)
    error_details: dict[str, Any] | None = None
    custom_fields: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)


class JobResult(Response):
    name: str
    job: str
    artifact_url: str | None = None
    download_url: str | None = None


class JobResponse(JobStatusResponse):
    """``POST .../jobs``, ``GET .../jobs/{name}``, ``POST .../cancel``: Helix's ``BaseJob`` (the stored canonical
    ``spec`` of its kind, e.g. an automodel job's with its ``output``)."""

    workspace: str | None = None
    description: str | None = None
    project: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None


# --- Evals: retrieve-eval (BEIR retrieval) ---------------------------------------------------------------------
class EmbeddingEndpoint(Request):
    """An OpenAI-compatible embeddings endpoint (``url`` is the ``/v1`` base or the full ``/v1/embeddings``)."""

    url: str
    name: str
    api_key_secret: str | None = None


class RetrievalTarget(Request):
    embeddings: EmbeddingEndpoint
    first_stage_k: int | None = Field(default=None, ge=1)
    truncate_long_documents: Literal["end", "start"] | None = None
    batch_size: int | None = Field(default=None, ge=1)
    # Helix prepends "query: " / "passage: " unless told otherwise; the models we serve take raw text.
    query_prefix: str = ""
    passage_prefix: str = ""


class RetrieveEvalSpec(Request):
    dataset: str  # workspace/fileset holding corpus.jsonl, queries.jsonl, qrels/test.tsv
    target: RetrievalTarget
    k: list[int] = Field(min_length=1)


class RetrieveEvalJobRequest(Request):
    name: Name
    description: str | None = None
    project: str | None = None
    spec: RetrieveEvalSpec
    custom_fields: dict[str, Any] | None = None


# Result names of a completed retrieve-eval job: flat means, and one row per query (per-query scores).
FLAT_METRICS_RESULT = "eval-results"
ROW_SCORES_RESULT = "row-scores"


# --- Customization: automodel jobs (nemo_automodel_plugin.schema.AutomodelJobInput) ----------------------------
class AutomodelDataset(Request):
    training: str  # workspace/fileset (or with #path/)
    validation: str | None = None


class AutomodelLoRA(Request):
    rank: int | None = Field(default=None, gt=0)
    alpha: int | None = Field(default=None, gt=0)
    dropout: float | None = Field(default=None, ge=0, lt=1)
    target_modules: list[str] | None = None


class AutomodelTraining(Request):
    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["all_weights", "lora", "lora_merged"]
    max_seq_length: int | None = Field(default=None, gt=0)
    precision: Literal["bf16", "fp16", "fp32", "fp8"] | None = None
    lora: AutomodelLoRA | None = None


class AutomodelSchedule(Request):
    epochs: int = Field(default=1, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    seed: int | None = None


class AutomodelBatch(Request):
    global_batch_size: int = Field(gt=0)
    micro_batch_size: int | None = Field(default=None, gt=0)


class AutomodelOptimizer(Request):
    learning_rate: float = Field(gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    warmup_steps: int | None = Field(default=None, ge=0)


class AutomodelOutput(Request):
    name: Name
    description: str | None = None


class AutomodelJobSpec(Request):
    model: str  # workspace/model entity
    dataset: AutomodelDataset
    training: AutomodelTraining
    schedule: AutomodelSchedule | None = None
    batch: AutomodelBatch | None = None
    optimizer: AutomodelOptimizer | None = None
    output: AutomodelOutput | None = None


class AutomodelOutputResponse(Response):
    """The canonical spec's ``output`` (``nemo_automodel_plugin.schema.OutputResponse``): the model entity
    ``{workspace}/{name}`` the job registers (an embedding model: ``type`` "model"), its weights in fileset
    ``{workspace}/{fileset}``."""

    name: str
    type: Literal["model", "adapter"] = "model"
    fileset: str
    description: str | None = None


class AutomodelJobRequest(Request):
    name: Name
    description: str | None = None
    spec: AutomodelJobSpec
    custom_fields: dict[str, Any] | None = None


# --- Models: deployments (upper-case statuses: `nemo/status.py`) ------------------------------------------------
class DeploymentModelSpec(Request):
    """``ModelDeploymentConfigModelSpec``: the model entity ``{model_namespace}/{model_name}`` to serve (both
    empty: the image's own model)."""

    model_namespace: str | None = Field(default=None, max_length=255)
    model_name: str | None = Field(default=None, max_length=255)
    model_revision: str | None = Field(default=None, max_length=255)
    model_type: str | None = None
    lora_enabled: bool | None = None


class ContainerExecutorConfig(Request):
    gpu: int = Field(ge=0)
    image_name: str | None = Field(default=None, max_length=500)
    image_tag: str | None = Field(default=None, max_length=255)
    disk_size: str | None = None
    health_check_path: str | None = None
    additional_envs: dict[str, str] | None = None
    additional_args: list[str] | None = None


class CreateDeploymentConfigRequest(Request):
    name: Name
    description: str | None = Field(default=None, max_length=1000)
    engine: Literal["nim", "vllm", "generic"] = "nim"
    model_spec: DeploymentModelSpec
    executor_config: ContainerExecutorConfig


class CreateDeploymentRequest(Request):
    name: Name
    config: str
    config_version: int | None = None


# ModelDeploymentStatus, upper case.
DeploymentStatus = Literal["UNKNOWN", "CREATED", "PENDING", "READY", "ERROR", "DELETING", "DELETED", "LOST"]


class DeploymentConfig(Response):
    id: str | None = None
    name: str
    workspace: str
    engine: str = "nim"
    model_spec: dict[str, Any] = Field(default_factory=dict)
    executor_config: dict[str, Any] = Field(default_factory=dict)
    entity_version: int = 1
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Deployment(Response):
    id: str | None = None
    name: str
    workspace: str
    config: str
    config_version: int | None = None
    entity_version: int | None = None
    status: str = "UNKNOWN"
    status_message: str = ""
    model_provider_id: str | None = None  # workspace/name of the provider that routes to it
    created_at: str | None = None
    updated_at: str | None = None
