"""v2 deployment configs and deployments (Models service), served by the platform's one ``DeploymentService``.

A v2 deployment config (store kind ``v2_deployment_config``, id ``ws/name``) names a model entity through its
``model_spec`` (``model_namespace``/``model_name``: a v2 automodel job's output, a registered model, or a base model
or customization target this platform knows). A v2 deployment of it is a model deployment of ``DeploymentService``
(``model_deployment``, id ``ws/name``; it loads the model and serves it on the NIM routes as ``ws/name`` without a
version), shown in v2's shape: upper-case statuses (pending -> ``PENDING``, ready -> ``READY``, failed -> ``ERROR``),
``status_message``, and ``model_provider_id`` ``ws/name``: the provider Helix would create for it, which this
platform answers (``provider``) and routes through its inference gateway routes to its own ``/v1/embeddings``.
"""

from __future__ import annotations

from typing import Any

from embed_ft.nemo.status import FAILED, PENDING, READY, deployment_status
from embed_ft.nemo.v2.contract import CreateDeploymentConfigRequest, CreateDeploymentRequest

from ..settings import PlatformSettings
from ..store import AlreadyExists, EntityStore, new_id, utc_now
from .deployments import DEPLOYMENT_KIND, DeploymentService
from .entities import MODEL_KIND
from .errors import ConflictError, InvalidInputError, NotFoundError, checked_name, found
from .model_weights import unversioned

CONFIG_KIND = "v2_deployment_config"
V2_DEPLOYMENT_STATUS = {PENDING: "PENDING", READY: "READY", FAILED: "ERROR"}
CONFIG_FIELD = "v2_config"  # the v2 config a model deployment was made from (only v2 deployments have it)


class V2Deployments:
    def __init__(self, settings: PlatformSettings, store: EntityStore, deployments: DeploymentService) -> None:
        self.settings = settings
        self.store = store
        self.deployments = deployments

    # ---- configs

    def create_config(self, workspace: str, request: CreateDeploymentConfigRequest) -> dict[str, Any]:
        ws = checked_name(workspace, "workspace")
        spec = request.model_spec
        if not spec.model_namespace or not spec.model_name:
            raise InvalidInputError(
                "model_spec.model_name",
                "model_spec: give model_namespace and model_name (the model entity to serve); this platform has "
                "no container image with a model of its own",
            )
        if spec.lora_enabled:
            raise InvalidInputError(
                "model_spec.lora_enabled",
                "model_spec.lora_enabled: the embedding NIM serves no "
                "LoRA adapters; deploy a merged or all_weights model",
            )
        now = utc_now()
        doc = {
            **request.body(),
            "id": new_id("deployment_config"),
            "namespace": ws,
            "workspace": ws,
            "entity_version": 1,
            "created_at": now,
        }
        try:
            return self.store.create(CONFIG_KIND, f"{ws}/{request.name}", doc)
        except AlreadyExists:
            raise ConflictError(f"deployment config {ws}/{request.name} already exists") from None

    def get_config(self, workspace: str, name: str) -> dict[str, Any]:
        return found(self.store.get(CONFIG_KIND, f"{workspace}/{name}"), f"deployment config {workspace}/{name}")

    def list_configs(self, workspace: str) -> list[dict[str, Any]]:
        return self.store.list(CONFIG_KIND, namespace=workspace)

    def delete_config(self, workspace: str, name: str) -> None:
        self.get_config(workspace, name)
        users = [d["name"] for d in self._v2_deployments(workspace) if d.get(CONFIG_FIELD) == name]
        if users:
            raise ConflictError(f"deployment config {workspace}/{name} is used by deployment(s) {', '.join(users)}")
        self.store.delete(CONFIG_KIND, f"{workspace}/{name}")

    # ---- deployments

    def create_deployment(self, workspace: str, request: CreateDeploymentRequest) -> dict[str, Any]:
        ws = checked_name(workspace, "workspace")
        try:
            config = self.get_config(ws, request.config)
        except NotFoundError as exc:
            raise InvalidInputError("config", f"config: {exc}") from None
        if request.config_version not in (None, config.get("entity_version", 1)):
            raise InvalidInputError(
                "config_version",
                f"config_version {request.config_version}: deployment config "
                f"{ws}/{request.config} has only version {config.get('entity_version', 1)}",
            )
        spec = config["model_spec"]
        model = f"{spec['model_namespace']}/{spec['model_name']}"
        doc = self.deployments.create_deployment(
            {"namespace": ws, "name": request.name, "config": {"model": model}, CONFIG_FIELD: request.config}
        )
        return self.document(doc)

    def _v2_doc(self, workspace: str, name: str) -> dict[str, Any]:
        doc = self.store.get(DEPLOYMENT_KIND, f"{workspace}/{name}")
        return found(doc if doc is not None and CONFIG_FIELD in doc else None, f"deployment {workspace}/{name}")

    def _v2_deployments(self, workspace: str) -> list[dict[str, Any]]:
        return [d for d in self.store.list(DEPLOYMENT_KIND, namespace=workspace) if CONFIG_FIELD in d]

    def document(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A model deployment in v2's shape (Helix's ``ModelDeployment``)."""
        status = deployment_status(doc)
        return {
            "id": doc["id"],
            "name": doc["name"],
            "workspace": doc["namespace"],
            "config": doc[CONFIG_FIELD],
            "config_version": 1,
            "entity_version": 1,
            "status": V2_DEPLOYMENT_STATUS.get(status, "UNKNOWN"),
            "status_message": str((doc.get("status_details") or {}).get("description") or "")[:1000],
            "model_provider_id": f"{doc['namespace']}/{doc['name']}",
            "created_at": doc.get("created_at"),
            "updated_at": doc.get("updated_at"),
        }

    def get_deployment(self, workspace: str, name: str) -> dict[str, Any]:
        return self.document(self._v2_doc(workspace, name))

    def list_deployments(self, workspace: str) -> list[dict[str, Any]]:
        return [self.document(d) for d in self._v2_deployments(workspace)]

    def delete_deployment(self, workspace: str, name: str) -> dict[str, Any]:
        """Undeploy at once (Helix marks it DELETING, then DELETED): the answer says DELETED; a GET then is 404."""
        self._v2_doc(workspace, name)
        doc = self.deployments.delete_deployment(f"{workspace}/{name}")
        return {**self.document(doc), "status": "DELETED", "status_message": "undeployed"}

    # ---- model entities: what a deployment config names

    def model_entity(self, workspace: str, name: str) -> dict[str, Any]:
        """A model entity this platform holds, in v2's shape (Helix's ``ModelEntity``: its weights are the fileset
        ``{ws}/{name}``)."""
        doc = found(self.store.get(MODEL_KIND, f"{workspace}/{name}"), f"model {workspace}/{name}")
        return {**doc, "workspace": workspace, "fileset": f"{workspace}/{name}"}

    # ---- the provider each deployment makes, and what the inference gateway routes to

    def provider(self, workspace: str, name: str) -> dict[str, Any]:
        """The deployment's provider (Helix's ``ModelProvider``): this platform's NIM base URL, its served model."""
        deployment = self.get_deployment(workspace, name)
        served = unversioned(self._v2_doc(workspace, name)["model"])
        return {
            "id": deployment["id"],
            "name": name,
            "workspace": workspace,
            "host_url": self.settings.nim_url,
            "served_models": [served],
            "enabled_models": [served],
            "status": deployment["status"],
            "status_message": deployment["status_message"],
            "model_deployment_id": f"{workspace}/{name}",
            "created_at": deployment["created_at"],
            "updated_at": deployment["updated_at"],
        }

    def require_ready_provider(self, workspace: str, name: str) -> None:
        """The gateway's check before it routes: a provider of a READY deployment (else 404, as Helix's gateway)."""
        try:
            ready = self.get_deployment(workspace, name)["status"] == "READY"
        except NotFoundError:
            ready = False
        if not ready:
            raise NotFoundError(f"Model provider {workspace}/{name} not found (or its deployment is not READY)")
