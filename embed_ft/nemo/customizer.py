"""Customizer client: targets, configs and customization (fine-tuning) jobs (``{NEMO_URL}/v1/customization``)."""

from __future__ import annotations

import copy
import logging
from typing import Any

from ..profiles import NEMO_V1
from .errors import checked_answer
from .http import (
    CreateResult,
    ServiceHTTP,
    cancel_job,
    create_job_once,
    create_or_fetch,
    filter_params,
    find_by_idempotency_key,
    segment,
)
from .v1.contract import IDEMPOTENCY_FIELD
from .v1.customization import (
    FINETUNING_TYPES,
    LORA_FINETUNING_TYPES,
    Config,
    ConfigRequest,
    Job,
    JobRequest,
    JobStatus,
    LoraParameters,
    Target,
    TargetRequest,
)

log = logging.getLogger("embed_ft.nemo")

__all__ = [
    "FINETUNING_TYPES",
    "IDEMPOTENCY_FIELD",
    "CustomizerClient",
    "lora_parameters",
    "sft_config_body",
    "sft_job_body",
]
JOBS = "/v1/customization/jobs"
CONFIGS = "/v1/customization/configs"
TARGETS = "/v1/customization/targets"


def split_ref(ref: str) -> tuple[str, str]:
    """``"ns/name"`` -> ``("ns", "name")``; a clear error otherwise."""
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name:
        raise ValueError(f"expected a 'namespace/name' reference, got {ref!r}")
    return namespace, name


def with_idempotency_key(body: dict[str, Any], key: str | None) -> dict[str, Any]:
    """A copy of a job body with ``custom_fields[embed_ft_idempotency_key] = key`` (unchanged if no key)."""
    body = copy.deepcopy(body)
    if key:
        body["custom_fields"] = {**(body.get("custom_fields") or {}), IDEMPOTENCY_FIELD: key}
    return body


def idempotency_key_of(job: dict[str, Any]) -> str | None:
    fields = job.get("custom_fields") if isinstance(job, dict) else None
    return fields.get(IDEMPOTENCY_FIELD) if isinstance(fields, dict) else None


def sft_config_body(
    name: str,
    namespace: str,
    target: str,
    *,
    finetuning_type: str = "all_weights",
    training_type: str = "sft",
    num_gpus: int = 1,
    num_nodes: int = 1,
    micro_batch_size: int = 8,
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    use_sequence_parallel: bool = False,
    training_precision: str = "bf16",
    max_seq_length: int = NEMO_V1.max_seq_length,
) -> dict[str, Any]:
    """The tutorial's customization config body (defaults are the tutorial's values), as the contract's
    ``ConfigRequest`` (a value it refuses raises here, before anything is sent)."""
    return config_request(
        {
            "name": name,
            "namespace": namespace,
            "target": target,
            "training_options": [
                {
                    "training_type": training_type,
                    "finetuning_type": finetuning_type,
                    "num_gpus": num_gpus,
                    "num_nodes": num_nodes,
                    "micro_batch_size": micro_batch_size,
                    "tensor_parallel_size": tensor_parallel_size,
                    "pipeline_parallel_size": pipeline_parallel_size,
                    "use_sequence_parallel": use_sequence_parallel,
                }
            ],
            "training_precision": training_precision,
            "max_seq_length": max_seq_length,
        }
    )


def config_request(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the contract's ``ConfigRequest`` sends it (validated; only the fields it sets)."""
    return ConfigRequest.model_validate(body).body()


def job_request(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the contract's customization ``JobRequest`` sends it (validated: bounded hyperparameters, no
    unknown key; only the fields it sets)."""
    return JobRequest.model_validate(body).body()


def lora_parameters(
    adapter_dim: int = 8,
    alpha: int = 16,
    adapter_dropout: float | None = None,
    target_modules: list[str] | None = None,
) -> dict[str, Any]:
    """``hyperparameters.lora`` (SDK 1.5 ``LoraParameters``); unset optional keys are left to the Customizer."""
    body: dict[str, Any] = {"adapter_dim": adapter_dim, "alpha": alpha}
    if adapter_dropout is not None:
        body["adapter_dropout"] = adapter_dropout
    if target_modules:
        body["target_modules"] = list(target_modules)
    return LoraParameters.model_validate(body).body()


def sft_job_body(
    name: str,
    config: str,
    dataset_namespace: str,
    dataset_name: str,
    output_model: str,
    *,
    epochs: int = 1,
    batch_size: int = NEMO_V1.batch_size,
    learning_rate: float = NEMO_V1.learning_rate,
    training_type: str = "sft",
    finetuning_type: str = "all_weights",
    extra_hyperparameters: dict[str, Any] | None = None,
    dataset_parameters: dict[str, Any] | None = None,
    integrations: list[Any] | None = None,
    description: str | None = None,
    lora: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The tutorial's customization job body, as the contract's ``JobRequest``; optional keys are added only when
    given. ``lora`` (:func:`lora_parameters`) goes to ``hyperparameters.lora`` for the ``lora``/``lora_merged``
    fine-tuning types."""
    body: dict[str, Any] = {
        "name": name,
        "config": config,
        "dataset": {"namespace": dataset_namespace, "name": dataset_name},
        "hyperparameters": {
            "training_type": training_type,
            "finetuning_type": finetuning_type,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            **(extra_hyperparameters or {}),
        },
        "output_model": output_model,
    }
    if lora is not None and finetuning_type in LORA_FINETUNING_TYPES:
        body["hyperparameters"]["lora"] = dict(lora)
    if dataset_parameters:
        body["dataset_parameters"] = dataset_parameters
    if integrations:
        body["integrations"] = integrations
    if description:
        body["description"] = description
    return job_request(body)


# Hyperparameters the Customizer's job list can filter on (SDK 1.5 ``CustomizationJobListFilter``).
LIST_FILTER_HYPERPARAMETERS = ("training_type", "finetuning_type", "epochs", "batch_size", "log_every_n_steps")


def job_list_filters(body: dict[str, Any]) -> dict[str, Any]:
    """The narrowest ``filter[...]`` of the Customizer's job list that a job created from ``body`` must match: its
    namespace and project when the body sets them, and its list-filterable hyperparameters."""
    hyperparameters = body["hyperparameters"] if isinstance(body.get("hyperparameters"), dict) else {}
    filters = {key: body[key] for key in ("namespace", "project") if isinstance(body.get(key), str) and body[key]}
    filters |= {
        key: hyperparameters[key] for key in LIST_FILTER_HYPERPARAMETERS if hyperparameters.get(key) is not None
    }
    return filters


def failure_detail(doc: dict[str, Any]) -> str:
    """The error text of a failed job: the last ``status_logs[].detail`` (or message), from a job or /status doc."""
    logs = doc.get("status_logs")
    if not isinstance(logs, list):
        details = doc.get("status_details")
        logs = details.get("status_logs") if isinstance(details, dict) else None
    for entry in reversed(logs or []):
        if isinstance(entry, dict) and (entry.get("detail") or entry.get("message")):
            return str(entry.get("detail") or entry.get("message"))
    return ""


class CustomizerClient:
    def __init__(self, http: ServiceHTTP) -> None:
        self.http = http

    # Targets
    def list_targets(self) -> list[dict[str, Any]]:
        return list(self.http.iter_pages(TARGETS, call="list customization targets"))

    def get_target(self, namespace: str, name: str) -> dict[str, Any] | None:
        doc = self.http.get_or_none(f"{TARGETS}/{segment(namespace)}/{segment(name)}")
        return None if doc is None else checked_answer(Target, doc, "Customizer: get customization target")

    def create_target(self, body: dict[str, Any]) -> CreateResult:
        body = TargetRequest.model_validate(body).body()
        return create_or_fetch(
            lambda: self.http.post(TARGETS, json=body, call="create customization target"),
            lambda: self.get_target(body["namespace"], body["name"]),
            what=f"customization target {body.get('namespace')}/{body.get('name')}",
        )

    # Configs
    def create_config(self, body: dict[str, Any]) -> CreateResult:
        """Create a config (name should carry a version, ``x@v1``); 409 -> the existing one, ``created=False``."""
        body = config_request(body)
        return create_or_fetch(
            lambda: self.http.post(CONFIGS, json=body, call="create customization config"),
            lambda: self.get_config(body["namespace"], body["name"]),
            what=f"customization config {body.get('namespace')}/{body.get('name')}",
        )

    def get_config(self, namespace: str, name: str) -> dict[str, Any] | None:
        doc = self.http.get_or_none(f"{CONFIGS}/{segment(namespace)}/{segment(name)}")
        return None if doc is None else checked_answer(Config, doc, "Customizer: get customization config")

    # Jobs
    def create_job(self, body: dict[str, Any], idempotency_key: str | None = None) -> CreateResult:
        """Submit a job, carrying ``idempotency_key`` in ``custom_fields``; never resubmitted blindly.

        If the answer is lost after sending, the job is looked up by its key and returned when found
        (``recovered=True``); without a key, or when not found, the error is raised.
        """
        body = with_idempotency_key(job_request(body), idempotency_key)
        return create_job_once(
            self.http, JOBS, body, idempotency_key, "customization job", lambda key: self.find_job(key, like=body)
        )

    def find_job(self, idempotency_key: str, like: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The newest job whose ``custom_fields`` carry this idempotency key, or None.

        The Customizer's list has no ``custom_fields`` filter (SDK 1.5 ``CustomizationJobListFilter``), so the list is
        narrowed by what the job body ``like`` fixes (:func:`job_list_filters`), and every page of it is scanned
        (no page limit; a list that cannot be read to its end raises naming the key).
        """
        return find_by_idempotency_key(
            self.http,
            JOBS,
            idempotency_key,
            "customization job",
            idempotency_key_of,
            filters=job_list_filters(like or {}),
        )

    def list_jobs(self, sort: str = "-created_at", max_pages: int = 20, **filters: Any) -> list[dict[str, Any]]:
        """Jobs, newest first; ``filters`` become ``filter[key]=value`` (e.g. ``status="running"``)."""
        params: dict[str, Any] = {"sort": sort, **filter_params(filters)}
        return list(self.http.iter_pages(JOBS, params=params, max_pages=max_pages, call="list customization jobs"))

    def get_job(self, job_id: str) -> dict[str, Any]:
        doc = self.http.get_object(f"{JOBS}/{segment(job_id)}", call="get customization job")
        return checked_answer(Job, doc, "Customizer: get customization job")

    def get_status(self, job_id: str) -> dict[str, Any]:
        """The ``/status`` document: percentage_done, steps, train/val loss, metrics, status_logs."""
        doc = self.http.get_object(f"{JOBS}/{segment(job_id)}/status", call="get customization job status")
        return checked_answer(JobStatus, doc, "Customizer: get customization job status")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop. A job that already ended is returned as it is instead of raising."""
        return cancel_job(self.http, JOBS, job_id, "customization job", self.get_job)

    def container_logs(self, job_id: str) -> Any:
        return self.http.get(f"{JOBS}/{segment(job_id)}/container-logs", call="get customization job logs")
