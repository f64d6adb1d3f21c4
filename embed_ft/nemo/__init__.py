"""Thin clients of the NeMo Microservices v1 wire contract (no Dagster here).

One client per service over a shared :class:`ServiceHTTP` (timeouts, safe retries, typed errors,
redacted secrets). The contract is ``shared/reference/nemo-api.md``.
"""

from .customizer import CustomizerClient, failure_detail, sft_config_body, sft_job_body
from .datastore import DataStoreClient, files_url
from .deployment import DeploymentClient, deployment_status, nim_deployment_body
from .entity_store import EntityStoreClient
from .errors import (
    Conflict,
    NemoAPIError,
    NemoConnectionError,
    NemoError,
    NemoResponseError,
    NemoTimeout,
    NotFound,
    ServerError,
    Unauthorized,
    redact,
    redact_document,
    register_secret,
)
from .evaluator import EvaluatorClient, beir_task, parse_metrics, retriever_config, retriever_target
from .http import CreateResult, ServiceHTTP, outcome_unknown
from .nim import NimClient
from .polling import PollTimeout, is_job_terminal, job_status, normalize_status, poll

__all__ = [
    "Conflict",
    "CreateResult",
    "CustomizerClient",
    "DataStoreClient",
    "DeploymentClient",
    "EntityStoreClient",
    "EvaluatorClient",
    "NemoAPIError",
    "NemoConnectionError",
    "NemoError",
    "NemoResponseError",
    "NemoTimeout",
    "NimClient",
    "NotFound",
    "PollTimeout",
    "ServerError",
    "ServiceHTTP",
    "Unauthorized",
    "beir_task",
    "deployment_status",
    "failure_detail",
    "files_url",
    "is_job_terminal",
    "job_status",
    "nim_deployment_body",
    "normalize_status",
    "outcome_unknown",
    "parse_metrics",
    "poll",
    "redact",
    "redact_document",
    "register_secret",
    "retriever_config",
    "retriever_target",
    "sft_config_body",
    "sft_job_body",
]
