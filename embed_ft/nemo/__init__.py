"""Thin clients of the NeMo Microservices v1 wire contract (no Dagster here).

One client per service over a shared :class:`ServiceHTTP` (timeouts, safe retries, typed errors,
redacted secrets). The contract's models are ``embed_ft.nemo.v1`` (described in ``docs/NEMO_CONTRACT.md``).
"""

from .customizer import CustomizerClient, failure_detail, sft_config_body, sft_job_body
from .datastore import DataStoreClient, files_url
from .deployment import DeploymentClient, nim_deployment_body
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
from .polling import PollTimeout, poll
from .status import deployed_model, deployment_status, is_terminal, job_status, normalize_status

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
    "deployed_model",
    "deployment_status",
    "failure_detail",
    "files_url",
    "is_terminal",
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
