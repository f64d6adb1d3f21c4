"""Serving stage: deploy the fine-tuned and the base model as NIMs, wait until the gateway serves them."""


import time
from typing import Any, Optional

from dagster import (
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    OpExecutionContext,
    asset,
    job,
    op,
)
from pydantic import Field, field_validator

from ..resources import DeploymentResource, EntityStoreResource, NimResource
from .backend import GPU_STAGE_CONDITION, backend_defaults
from .common import backend_errors_as_failures, fail_on_invalid_run_config, norm_status, wait_for_remote
from .training import ExperimentConfig, validate_name

NIM_CODE_VERSION = "1"
READY_STATUSES = {"ready"}
FAILED_DEPLOYMENT_STATUSES = {"failed", "cancelled", "error", "lost"}


class DeployConfig(ExperimentConfig):
    image_name: str = Field(default="nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2", description="NIM image.")
    image_tag: str = Field(default="1.6.0", description="NIM image tag.")
    gpu: int = Field(default=1, description="GPUs per NIM.")
    timeout_s: Optional[float] = Field(default=None, description="Fail if not ready and listed by then.")
    poll_interval_s: float = Field(default=5.0, description="Seconds between readiness polls.")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"gpu must be >= 0, got {v}")
        return v


class BaselineDeployConfig(DeployConfig):
    base_model: Optional[str] = Field(
        default=None,
        description="Base model to measure; empty: nvidia/llama-3.2-nv-embedqa-1b-v2 on NeMo, "
        "sentence-transformers/all-MiniLM-L6-v2 locally.",
    )


def deployment_model(doc: dict) -> Optional[str]:
    """The model a deployment serves, wherever this server version puts it."""
    config = doc.get("config")
    if isinstance(config, dict) and config.get("model"):
        return config["model"]
    if doc.get("model"):
        return doc["model"]
    models = doc.get("models")
    if isinstance(models, list) and models:
        first = models[0]
        return first if isinstance(first, str) else first.get("name") or first.get("id")
    return None


def deployment_status(doc: dict) -> str:
    return norm_status((doc.get("status_details") or {}).get("status") or doc.get("status"))


def deploy_and_wait(
    context,
    config: DeployConfig,
    deployment: DeploymentResource,
    nim: NimResource,
    namespace: str,
    name: str,
    model: str,
) -> dict[str, Any]:
    """Deploy ``model`` as ``namespace/name`` (replacing a deployment of another model), wait for ready and for
    the NIM gateway to list it, then send one smoke embedding."""
    dm, nim_client = deployment.client(), nim.client()
    defaults = backend_defaults(deployment.uses_local_platform)
    timeout_s = config.timeout_s or defaults.deployment_timeout_s
    served_name = model.split("@", 1)[0]
    nim_deployment = {
        "image_name": config.image_name,
        "image_tag": config.image_tag,
        "gpu": config.gpu,
        "disable_lora_support": True,
    }
    existing = dm.get_deployment(namespace, name)
    if existing is not None and (
        deployment_model(existing) != model or deployment_status(existing) in FAILED_DEPLOYMENT_STATUSES
    ):
        context.log.info(
            f"Deployment {namespace}/{name} serves {deployment_model(existing)} ({deployment_status(existing)}); "
            f"replacing it with {model}."
        )
        dm.delete_deployment(namespace, name)
        wait_for_remote(
            context,
            what=f"removal of deployment {namespace}/{name}",
            fetch=lambda: _deployment_or_gone(dm, namespace, name),
            status_of=deployment_status,
            cancel=None,
            timeout_s=timeout_s,
            interval_s=config.poll_interval_s,
            terminal={"gone"},
        )
        existing = None
    if existing is None:
        dm.create_deployment(name, namespace, model, nim_deployment)
        context.log.info(f"Requested deployment {namespace}/{name} of {model}")

    started = time.monotonic()
    doc = wait_for_remote(
        context,
        what=f"deployment {namespace}/{name}",
        fetch=lambda: _deployment_or_gone(dm, namespace, name),
        status_of=deployment_status,
        cancel=None,  # a half-started NIM is torn down by the teardown job, not by a terminated run
        timeout_s=timeout_s,
        interval_s=config.poll_interval_s,
        terminal=READY_STATUSES | FAILED_DEPLOYMENT_STATUSES | {"gone"},
        describe=lambda d: f"status={deployment_status(d)} {(d.get('status_details') or {}).get('description') or ''}",
        timeout_hint="it holds a GPU: run teardown_deployments_job to remove it, or raise timeout_s and materialize again.",
    )
    status = deployment_status(doc)
    if status not in READY_STATUSES:
        description = (doc.get("status_details") or {}).get("description") or "no description"
        raise Failure(
            f"Deployment {namespace}/{name} of {model} ended {status}: {description}. "
            "Run teardown_deployments_job to remove it."
        )
    remaining = max(1.0, timeout_s - (time.monotonic() - started))
    wait_for_remote(
        context,
        what=f"NIM gateway listing {served_name}",
        fetch=lambda: {"status": "listed" if served_name in nim_client.list_models() else "waiting"},
        status_of=lambda d: d["status"],
        cancel=None,
        timeout_s=remaining,
        interval_s=config.poll_interval_s,
        terminal={"listed"},
    )
    ready_after = time.monotonic() - started
    vectors = nim_client.embed(["embed-ft smoke test"], served_name, input_type="query")
    dimension = len(vectors[0])
    return {
        "deployment": f"{namespace}/{name}",
        "model": model,
        "served_name": served_name,
        "dimension": dimension,
        "nim_url": nim.url(),
        "ready_after_s": ready_after,
    }


def _deployment_or_gone(dm, namespace: str, name: str) -> dict:
    return dm.get_deployment(namespace, name) or {"status": "gone"}


def _result(info: dict[str, Any]) -> MaterializeResult:
    metadata = {
        "deployment": info["deployment"],
        "model": info["model"],
        "served_name": info["served_name"],
        "nim_url": info["nim_url"],
        "dimension": float(info["dimension"]),
        "ready_after_s": float(info["ready_after_s"]),
    }
    return MaterializeResult(value=info, metadata=metadata, data_version=DataVersion(info["model"]))


def deployment_names(experiment: str) -> dict[str, str]:
    return {"fine_tuned": f"{experiment}-ft-nim", "baseline": f"{experiment}-base-nim"}


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="serving",
    code_version=NIM_CODE_VERSION,
    kinds={"nemo"},
    pool="nemo_deployment",
    description="The fine-tuned model deployed as a NIM, ready and listed by the gateway, smoke-tested.",
)
@backend_errors_as_failures
def fine_tuned_nim(
    context: AssetExecutionContext,
    config: DeployConfig,
    fine_tuned_model: dict,
    deployment: DeploymentResource,
    nim: NimResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    name = deployment_names(config.experiment)["fine_tuned"]
    info = deploy_and_wait(context, config, deployment, nim, entity_store.namespace, name, fine_tuned_model["output_model"])
    return _result(info)


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="serving",
    code_version=NIM_CODE_VERSION,
    kinds={"nemo"},
    pool="nemo_deployment",
    description="The base model deployed as a NIM, so that the baseline is measured in the same run, not quoted.",
)
@backend_errors_as_failures
def baseline_nim(
    context: AssetExecutionContext,
    config: BaselineDeployConfig,
    deployment: DeploymentResource,
    nim: NimResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    fail_on_invalid_run_config(context)
    model = config.base_model or backend_defaults(deployment.uses_local_platform).base_model
    name = deployment_names(config.experiment)["baseline"]
    info = deploy_and_wait(context, config, deployment, nim, entity_store.namespace, name, model)
    return _result(info)


class TeardownConfig(Config):
    experiments: list[str] = Field(
        default_factory=lambda: ["default"], description="Experiments whose NIM deployments are deleted."
    )

    @field_validator("experiments")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return [validate_name("experiments[]", e) for e in v]


@op(description="Delete the NIM deployments of the given experiments (they hold GPUs).")
def delete_deployments(
    context: OpExecutionContext, config: TeardownConfig, deployment: DeploymentResource, entity_store: EntityStoreResource
) -> list[str]:
    dm = deployment.client()
    deleted = []
    for experiment in config.experiments:
        for name in deployment_names(experiment).values():
            if not dm.delete_deployment(entity_store.namespace, name):
                continue
            deleted.append(f"{entity_store.namespace}/{name}")
            context.log.info(f"Deleted deployment {entity_store.namespace}/{name}")
    return deleted


@job(description="Tear down NIM deployments (GPU cost). Evaluations already materialized are kept.")
def teardown_deployments_job():
    delete_deployments()

