"""The NeMo Microservices v1 wire contract (release line 25.x), written once: the typed request and response models
of the Entity Store, the Data Store's namespaces, Deployment Management and the NIM gateway (the Customizer's are in
``v1/customization.py``, the Evaluator's in ``v1/evaluation.py``; ``v1/routes.py`` maps every route to its models).

The clients in ``embed_ft.nemo`` build their request bodies with these models and check answers against them; the
embedded platform's api (``embed_ft.platform.api``) validates request bodies with the same models (its 422 names the
field); the test fake (``embed_ft_tests/nemo_fake.py``) validates what it is sent and serves answers through them.
``docs/NEMO_CONTRACT.md`` describes the contract; these modules are its source of truth.

Request models keep or forbid unknown fields as the embedded platform does (NeMo entities carry many optional
fields; a job's hyperparameters refuse typos); response models keep every field (``extra="allow"``) and name only
what a client reads.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..wire import Pagination as Pagination, Response as Response  # shared with v2 (re-exported for v1's modules)

T = TypeVar("T")

IDEMPOTENCY_FIELD = "embed_ft_idempotency_key"  # the custom_fields key a long job's idempotency key travels in


class Request(BaseModel):
    """A request body; subclasses set ``extra`` as the platform does (``allow`` for entities, ``forbid`` else)."""

    def body(self) -> dict[str, Any]:
        """The JSON body as the caller set it: defaults the caller did not set are left to the server."""
        return self.model_dump(mode="json", exclude_unset=True)


class ListPage(Response, Generic[T]):
    """Every list route: ``{"object": "list", "data": [...], "pagination": {...}, "sort", "filter", "search"}``."""

    object: str = "list"
    data: list[T]
    pagination: Pagination | None = None


class DeleteResponse(Response):
    """NeMo's ``DeleteResponse`` (a delete of a namespace, dataset or model; the SDK parses it)."""

    id: str | None = None
    deleted_at: str | None = None
    message: str | None = None


class ErrorResponse(Response):
    """``{"detail": "..."}``; FastAPI's 422 carries a list ``[{"loc", "msg", "type"}]`` naming the field."""

    detail: str | list[Any] | None = None


# --- Entity Store: namespaces, datasets, models ------------------------------------------------------------------
class NamespaceRequest(Request):
    """``POST /v1/namespaces``."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(description="the namespace's name (NeMo calls it id)")
    description: str = Field("", description="free text")
    project: str | None = Field(None, description="a project this namespace belongs to")


class Namespace(Response):
    id: str


class DatasetRequest(Request):
    """``POST /v1/datasets``: a registration pointing at files (``hf://datasets/{ns}/{name}`` in the Data Store)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="the dataset's name in its namespace")
    namespace: str = Field(description="the Entity Store namespace")
    description: str = Field("", description="free text")
    files_url: str | None = Field(None, description="where the files are: hf://datasets/{ns}/{name}, file://...")
    project: str | None = Field(None, description="a project the dataset belongs to")
    format: str | None = Field(None, description="a format tag (stored, not interpreted)")
    custom_fields: dict[str, Any] = Field(default_factory=dict, description="free key/value pairs")


class Dataset(Response):
    name: str
    namespace: str
    files_url: str | None = None


class ModelRequest(Request):
    """``POST /v1/models``: a model entity (a fine-tuned model's name carries its version, ``name@cust-...``)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="the model's name in its namespace")
    namespace: str = Field(description="the Entity Store namespace")
    description: str = Field("", description="free text")
    base_model: str | None = Field(None, description="the model this one was trained from")
    project: str | None = Field(None, description="a project the model belongs to")
    peft: dict[str, Any] | None = Field(None, description='{"finetuning_type": ...} of a fine-tuned model')
    spec: dict[str, Any] | None = Field(None, description="model spec (stored)")
    artifact: dict[str, Any] | None = Field(None, description='{"files_url", "backend_engine", ...}')
    custom_fields: dict[str, Any] = Field(default_factory=dict, description="free key/value pairs")


class Model(Response):
    name: str
    namespace: str
    base_model: str | None = None
    peft: dict[str, Any] | None = None
    artifact: dict[str, Any] | None = None
    created_at: str | None = None


# --- Data Store namespaces (form-encoded, not JSON) ---------------------------------------------------------------
class DatastoreNamespaceForm(Request):
    """``POST /v1/datastore/namespaces`` as ``application/x-www-form-urlencoded``: ``namespace=<name>``."""

    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(min_length=1, description="the Data Store namespace (the Hub's organization)")


class DatastoreNamespace(Response):
    namespace: str
    created_at: str | None = None
    updated_at: str | None = None


class RepoRequest(Request):
    """``POST /v1/hf/api/repos/create`` and ``DELETE /v1/hf/api/repos/delete`` (``huggingface_hub`` sends them)."""

    model_config = ConfigDict(extra="allow")  # huggingface_hub adds private, sdk, exist_ok and the like
    name: str = Field(description="the repo's name, or 'namespace/name' without organization")
    organization: str | None = Field(None, description="the Data Store namespace")
    # Any string: the Data Store answers an unserved type (space) with a 400 naming it.
    type: str | None = Field(None, description="repo type: dataset or model (default model, as the Hub)")


class RepoCreated(Response):
    url: str


# --- Deployment Management ----------------------------------------------------------------------------------------
class NimDeployment(Request):
    """``config.nim_deployment`` (the tutorial's: the embedding NIM has no LoRA support, so it is disabled)."""

    model_config = ConfigDict(extra="allow")
    image_name: str | None = Field(None, description="the NIM container image")
    image_tag: str | None = Field(None, description="its tag")
    gpu: int | None = Field(None, ge=0, description="GPUs for the NIM")
    disable_lora_support: bool | None = Field(None, description="true for the embedding NIM")


class DeploymentSpec(Request):
    """An inline deployment config: the model to serve (``ns/name@cust-...``) and its NIM."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="the (versioned) model entity to serve")
    nim_deployment: dict[str, Any] | None = Field(None, description="see NimDeployment")


class DeploymentConfigRequest(DeploymentSpec):
    """``POST /v1/deployment/configs``: a named config that deployments refer to as ``ns/name``."""

    name: str = Field(description="the config's name")
    namespace: str = Field(description="its namespace")
    description: str | None = Field(None, description="free text")
    project: str | None = Field(None, description="a project")


class ModelDeploymentRequest(Request):
    """``POST /v1/deployment/model-deployments``: an inline config, or a config's ``ns/name``."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="the deployment's name")
    namespace: str = Field(description="its namespace")
    config: str | DeploymentSpec = Field(description="inline config, or a deployment config's ns/name")
    description: str | None = Field(None, description="free text")
    project: str | None = Field(None, description="a project")


class DeploymentStatusDetails(Response):
    status: str | None = None  # statuses.DEPLOYMENT_*; newer servers write them in upper case
    description: str | None = None


class ModelDeployment(Response):
    name: str
    namespace: str
    config: str | dict[str, Any] | None = None
    status_details: DeploymentStatusDetails | None = None
    url: str | None = None
    deployed: bool | None = None
    models: list[Any] | None = None


# --- NIM inference gateway ----------------------------------------------------------------------------------------
class EmbeddingsRequest(Request):
    """``POST {NIM_URL}/v1/embeddings`` (OpenAI-compatible, plus NIM's ``input_type`` and ``truncate``)."""

    model_config = ConfigDict(extra="allow")  # OpenAI clients send "user" and the like
    input: str | list[str] = Field(description="one text or a list of texts")
    model: str = Field(description="the served (unversioned) name ns/name")
    input_type: Literal["query", "passage"] | None = Field(None, description="asymmetric models need it")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32")
    # NIM's own default is NONE (refuse over-long input); END matches OpenAI clients, which never send it.
    truncate: Literal["NONE", "START", "END"] = Field("END", description="what to do with over-long input")
    dimensions: int | None = Field(None, description="Matryoshka truncation of the vectors")


class Embedding(Response):
    index: int
    embedding: list[float] | str  # a float list, or base64 of little-endian float32
    object: str = "embedding"


class EmbeddingsResponse(Response):
    object: str = "list"
    data: list[Embedding]
    model: str | None = None
    usage: dict[str, Any] | None = None


class ServedModels(Response):
    """``GET {NIM_URL}/v1/models``: the served models (entries without an id are skipped by the client)."""

    data: list[Any]  # {"id", "object", "owned_by", ...}
