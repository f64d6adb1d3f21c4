"""The v1 Evaluator's wire contract (``{NEMO_URL}/v1/evaluation/...``): retriever jobs over BEIR tasks, inline or
by reference to configs and targets, and their results.

The embedded platform checks what these models leave open (task type ``beir``, known metric names, reachable
``files_url`` and endpoints: ``platform/services/evaluation/validation.py``) with messages naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .contract import Request, Response


class MetricSpec(Request):
    model_config = ConfigDict(extra="allow")
    type: str | None = Field(None, description="the metric's name: recall_5, ndcg_cut_10, ... (default: its key)")


class BeirDataset(Request):
    model_config = ConfigDict(extra="allow")
    files_url: str = Field(description="file://NAME/ (preloaded) or hf://datasets/{ns}/{name} (BEIR layout)")


class BeirTask(Request):
    """One task of a retriever config: a BEIR set and the metrics measured on it."""

    model_config = ConfigDict(extra="allow")
    type: Literal["beir"] = Field("beir", description="the only task type the retriever evaluation runs")
    dataset: BeirDataset = Field(description="where the BEIR set is")
    metrics: dict[str, MetricSpec | None] = Field(
        min_length=1, description="{name: {type: name}} ({} or null: the key)"
    )


class RetrieverConfig(Request):
    """An inline config, or ``POST /v1/evaluation/configs`` (then with ``name``)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["retriever"] = Field("retriever", description="retriever evaluation")
    namespace: str | None = Field(None, description="its namespace")
    name: str | None = Field(None, description="its name, for a stored config")
    tasks: dict[str, BeirTask] = Field(min_length=1, description="{task name: task}")


class ApiEndpoint(Request):
    model_config = ConfigDict(extra="allow")
    url: str = Field(description="$NIM_URL/v1/embeddings")
    model_id: str = Field(description="the served model")
    api_key: str | None = Field(None, description="a bearer token for the endpoint (never stored in clear)")


class EmbeddingModel(Request):
    model_config = ConfigDict(extra="allow")
    api_endpoint: ApiEndpoint = Field(description="the OpenAI-compatible embeddings endpoint")


class RetrieverPipeline(Request):
    model_config = ConfigDict(extra="allow")
    query_embedding_model: EmbeddingModel = Field(description="embeds the queries")
    index_embedding_model: EmbeddingModel | None = Field(None, description="embeds the corpus (default: the query's)")
    top_k: int = Field(10, ge=1, le=10_000, description="retrieved documents per query")


class Retriever(Request):
    model_config = ConfigDict(extra="allow")
    pipeline: RetrieverPipeline = Field(description="the retrieval pipeline")


class RetrieverTarget(Request):
    """An inline target, or ``POST /v1/evaluation/targets`` (then with ``name``)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["retriever"] = Field("retriever", description="retriever target")
    namespace: str | None = Field(None, description="its namespace")
    name: str | None = Field(None, description="its name, for a stored target")
    retriever: Retriever = Field(description="what is evaluated")


class JobRequest(Request):
    """``POST /v1/evaluation/jobs``: an inline config and target, or their ``ns/name``."""

    model_config = ConfigDict(extra="allow")
    config: RetrieverConfig | str = Field(description="inline retriever config, or a stored config's ns/name")
    target: RetrieverTarget | str = Field(description="inline retriever target, or a stored target's ns/name")
    namespace: str | None = Field(None, description="the job's namespace")
    description: str | None = Field(None, description="free text")
    project: str | None = Field(None, description="a project")
    custom_fields: dict[str, Any] | None = Field(None, description="free key/value pairs (the idempotency key)")


class JobStatusDetails(Response):
    progress: float | None = None
    message: str | None = None
    task_status: dict[str, Any] | None = None


class Job(Response):
    """An evaluation job (``POST``/``GET /v1/evaluation/jobs[/{id}]``; cancel answers it too)."""

    id: str
    status: str | None = None
    status_details: JobStatusDetails | None = None
    custom_fields: dict[str, Any] | None = None


class Results(Response):
    """``GET /v1/evaluation/jobs/{id}/results``: ``{"job", "id", "files_url", "tasks": {NAME: {"metrics":
    {"retriever.ndcg_cut_10": {"scores": {"ndcg_cut_10": {"value", "stats"}}}}}}}``. Other server versions nest
    results under ``groups`` or answer a list; ``nemo/evaluator.py parse_metrics`` reads all three."""

    job: str | None = None
    id: str | None = None
    files_url: str | None = None
    tasks: dict[str, Any] | None = None
    groups: dict[str, Any] | None = None
