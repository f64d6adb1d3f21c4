"""Deployment Management client: NIM model deployments (``{NEMO_URL}/v1/deployment/model-deployments``)."""

from __future__ import annotations

from typing import Any

from ..profiles import NEMO_V1
from .errors import Conflict, NemoAPIError, checked_answer
from .http import CreateResult, ServiceHTTP, create_or_fetch, segment

# The deployment status helpers live in status.py; importing them here keeps `nemo.deployment` the one place a
# deployment caller (bench/bench_embeddings.py) needs.
from .status import deployed_model, deployment_status, is_failed, is_ready
from .v1.contract import DeploymentSpec, ModelDeployment, ModelDeploymentRequest, NimDeployment

__all__ = [
    "EMBEDQA_IMAGE",
    "EMBEDQA_TAG",
    "DeploymentClient",
    "deployed_model",
    "deployment_status",
    "is_failed",
    "is_ready",
    "nim_deployment_body",
]

DEPLOYMENTS = "/v1/deployment/model-deployments"
# Deployment Management answers 500 instead of 409 when the deployment already exists (a reported quirk).
EXISTS_STATUSES = (409, 500)
EMBEDQA_IMAGE = NEMO_V1.nim_image
EMBEDQA_TAG = NEMO_V1.nim_tag


def nim_deployment_body(
    image_name: str = EMBEDQA_IMAGE, image_tag: str = EMBEDQA_TAG, gpu: int = 1, disable_lora_support: bool = True
) -> dict[str, Any]:
    """The tutorial's ``nim_deployment``: the embedding NIM has no LoRA support, so it must be disabled."""
    return NimDeployment(
        image_name=image_name, image_tag=image_tag, gpu=gpu, disable_lora_support=disable_lora_support
    ).body()


class DeploymentClient:
    def __init__(self, http: ServiceHTTP) -> None:
        self.http = http

    def create_deployment(self, name: str, namespace: str, model: str, nim_deployment: dict[str, Any]) -> CreateResult:
        """Deploy ``model`` (inline config style). Existing (409, or the 500 quirk) -> existing, ``created=False``.

        An existing deployment serving a different model raises :class:`Conflict`: it has to be deleted
        first, otherwise the wrong model would be measured.
        """
        body = ModelDeploymentRequest(
            name=name, namespace=namespace, config=DeploymentSpec(model=model, nim_deployment=nim_deployment)
        ).body()
        result = create_or_fetch(
            lambda: self.http.post(DEPLOYMENTS, json=body, call="create model deployment"),
            lambda: self.get_deployment(namespace, name),
            what=f"deployment {namespace}/{name}",
            exists_statuses=EXISTS_STATUSES,
        )
        serving = deployed_model(result)
        if not result.created and serving and serving != model:
            raise Conflict(
                "Deployment Management",
                f"POST {DEPLOYMENTS} (create model deployment {namespace}/{name})",
                409,
                f"deployment {namespace}/{name} already exists and serves {serving!r}, not {model!r}; delete it first",
            )
        return result

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The deployment, or None if it does not exist."""
        doc = self.http.get_or_none(f"{DEPLOYMENTS}/{segment(namespace)}/{segment(name)}")
        return None if doc is None else checked_answer(ModelDeployment, doc, "Deployment Management: get deployment")

    def delete_deployment(self, namespace: str, name: str) -> bool:
        """Delete (free the GPU); False if it did not exist."""
        try:
            self.http.delete(f"{DEPLOYMENTS}/{segment(namespace)}/{segment(name)}", call="delete model deployment")
            return True
        except NemoAPIError as exc:
            if exc.status == 404:
                return False
            raise
