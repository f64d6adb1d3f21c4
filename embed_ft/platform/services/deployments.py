"""Deployment Management: serve a model on the NIM routes of this platform.

Store kinds ``deployment_config`` and ``model_deployment`` (id ``ns/name``). Creating a deployment answers at
once with status ``pending``; a background thread resolves the model (Entity Store model or customization
target), loads it, and registers it with the serving registry under its unversioned name: then ``ready``. A
model that cannot be resolved or loaded makes the deployment ``failed`` with a description naming it (as on a
cluster, where the NIM pod fails after the create call succeeded). Deleting a deployment undeploys it.
Deployments that were ready when the platform stopped are loaded again at start-up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from embed_ft.nemo.status import FAILED, PENDING, READY

from ..settings import PlatformSettings
from ..store import AlreadyExists, EntityStore, new_id
from . import embedding
from .entities import MODEL_KIND
from .errors import ConflictError, InvalidInputError, NotFoundError, checked_name
from .model_weights import ModelNotFound, resolve_model_path, split_model_ref, unversioned
from .runtime_choice import RuntimeCalibrations, machine_calibrations_dir
from .serving import ServedModel, ServingRegistry

log = logging.getLogger("embed_ft.platform.deployment")

CONFIG_KIND = "deployment_config"
DEPLOYMENT_KIND = "model_deployment"
LORA_HINT = "the embedding NIM has no LoRA support: set nim_deployment.disable_lora_support to true"


class DeploymentExists(ConflictError):
    """A model deployment of this name exists (the real service answers this with 500; see the api)."""


def check_spec(model: str, nim_deployment: dict[str, Any] | None) -> None:
    """The ``model`` and ``nim_deployment`` of a deployment spec are deployable here."""
    try:
        split_model_ref(model)
    except ModelNotFound as exc:
        raise InvalidInputError("model", str(exc)) from None
    if nim_deployment is not None and nim_deployment.get("disable_lora_support") is False:
        raise InvalidInputError("nim_deployment.disable_lora_support", LORA_HINT)


class DeploymentService:
    """Deployment configs and model deployments; loads deployed models into the serving registry."""

    def __init__(self, settings: PlatformSettings, store: EntityStore, serving: ServingRegistry) -> None:
        self.settings = settings
        self.store = store
        self.serving = serving
        # Serialises status writes of loader threads with deletes (a deleted deployment must serve nothing).
        self._status_lock = threading.Lock()

    # ---- configs

    def create_config(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = checked_name(body["namespace"], "namespace")
        name = checked_name(body["name"], "deployment config name")
        check_spec(body["model"], body.get("nim_deployment"))
        try:
            return self.store.create(CONFIG_KIND, f"{namespace}/{name}", {**body, "id": new_id("deployment_config")})
        except AlreadyExists:
            raise ConflictError(f"deployment config {namespace}/{name} already exists") from None

    def get_config(self, key: str) -> dict[str, Any]:
        doc = self.store.get(CONFIG_KIND, key)
        if doc is None:
            raise NotFoundError(f"deployment config {key} not found")
        return doc

    def delete_config(self, key: str) -> None:
        if not self.store.delete(CONFIG_KIND, key):
            raise NotFoundError(f"deployment config {key} not found")

    # ---- deployments

    def create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the deployment ``body`` describes and start loading its model. ``body["config"]`` is a stored
        config's ``ns/name`` or an inline spec (``model``, ``nim_deployment``)."""
        namespace = checked_name(body["namespace"], "namespace")
        name = checked_name(body["name"], "deployment name")
        key = f"{namespace}/{name}"
        if self.store.get(DEPLOYMENT_KIND, key) is not None:
            raise DeploymentExists(f"model deployment {key} already exists")
        spec = body["config"]
        if isinstance(spec, str):
            config = self.store.get(CONFIG_KIND, spec)
            if config is None:
                raise NotFoundError(f"deployment config {spec} not found; create it with POST /v1/deployment/configs")
            spec = {k: v for k, v in config.items() if k in ("model", "nim_deployment")}
        check_spec(spec["model"], spec.get("nim_deployment"))
        pinned = self.pinned_model(spec["model"])
        doc = {
            **body,
            "id": new_id("deployment"),
            "namespace": namespace,
            "name": name,
            "model": spec["model"],
            "model_version": pinned,  # what it loads, now and after every restart
            "models": [unversioned(spec["model"])],
            "url": self.settings.base_url,
            "deployed": False,
            "async_enabled": False,
            "status_details": {"status": PENDING, "description": f"loading {spec['model']}"},
        }
        with self._status_lock:  # the count and the insert at once: two racing creates cannot pass the cap
            self._check_capacity()
            try:
                doc = self.store.create(DEPLOYMENT_KIND, key, doc)
            except AlreadyExists:  # lost a race with an identical request
                raise DeploymentExists(f"model deployment {key} already exists") from None
        self._start_loading(doc)
        return doc

    def _check_capacity(self) -> None:
        """At most ``settings.max_deployments`` deployments hold a model (loading or ready) at once."""
        live = [d for d in self.store.list(DEPLOYMENT_KIND) if (d.get("status_details") or {}).get("status") != FAILED]
        limit = self.settings.max_deployments
        if len(live) >= limit:
            raise ConflictError(
                f"{len(live)} model deployments are live; the limit is {limit} (max_deployments): "
                "delete one first (DELETE /v1/deployment/model-deployments/<namespace>/<name>)"
            )

    def pinned_model(self, model_ref: str) -> str:
        """The Entity Store model a deployment of ``model_ref`` serves, resolved once at create time: an
        unversioned ``ns/name`` whose versions ``ns/name@...`` exist pins the newest of them, so that a newer
        version (a later fine-tune) never replaces what a deployment serves behind its back. Anything else (an
        exact model, a customization target, a base model) is loaded as named."""
        ns, name, version = split_model_ref(model_ref)
        if version is not None or self.store.get(MODEL_KIND, model_ref) is not None:
            return model_ref
        versions = [
            d for d in self.store.list(MODEL_KIND, namespace=ns) if str(d.get("name", "")).startswith(f"{name}@")
        ]
        return f"{ns}/{versions[0]['name']}" if versions else model_ref

    def get_deployment(self, key: str) -> dict[str, Any]:
        doc = self.store.get(DEPLOYMENT_KIND, key)
        if doc is None:
            raise NotFoundError(f"model deployment {key} not found")
        return doc

    def deployments_of_model(self, model_key: str) -> list[str]:
        """The deployments (``ns/name``) that serve, or are loading, the Entity Store model ``model_key``: its
        weights must stay (a deployment loads them again at every start-up)."""
        users = []
        for doc in self.store.list(DEPLOYMENT_KIND):
            if (doc.get("status_details") or {}).get("status") == FAILED:
                continue
            pinned = doc.get("model_version")
            if pinned == model_key or (pinned is None and doc.get("model") in (model_key, unversioned(model_key))):
                users.append(f"{doc['namespace']}/{doc['name']}")
        return users

    def delete_deployment(self, key: str) -> dict[str, Any]:
        """Delete and undeploy; returns the deleted document."""
        with self._status_lock:
            doc = self.get_deployment(key)
            self.store.delete(DEPLOYMENT_KIND, key)
            self.serving.remove_deployment(doc["id"])
        return doc

    def restore(self) -> None:
        """Serve again what was deployed before the platform stopped (a cluster keeps its NIMs running)."""

        def restore_one(key: str, doc: dict[str, Any]) -> None:
            if (doc.get("status_details") or {}).get("status") in (READY, PENDING):
                self.store.update(
                    DEPLOYMENT_KIND,
                    f"{doc['namespace']}/{doc['name']}",
                    {
                        "status_details": {"status": PENDING, "description": f"loading {doc['model']} after a restart"},
                        "deployed": False,
                    },
                )
                self._start_loading(doc)

        self.store.each_row(DEPLOYMENT_KIND, restore_one, "restoring deployments")

    # ---- loading

    def _set_status(self, key: str, deployment_id: str, status: str, description: str, **extra: Any) -> None:
        """Update the deployment unless it was deleted (or replaced) meanwhile."""
        with self._status_lock:
            doc = self.store.get(DEPLOYMENT_KIND, key)
            if doc is None or doc.get("id") != deployment_id:
                return
            self.store.update(
                DEPLOYMENT_KIND,
                key,
                {
                    "status_details": {"status": status, "description": description},
                    **extra,
                },
            )

    def _load(self, key: str, deployment_id: str, model_ref: str) -> None:
        served_name = unversioned(model_ref)
        try:
            path = resolve_model_path(self.store, model_ref)
            model = embedding.load_model(
                path, calibrations=RuntimeCalibrations(self.settings.runtimes_dir, machine_calibrations_dir())
            )
        except Exception as exc:  # unknown model, broken weights, out of memory: the deployment says which
            log.warning("deployment %s failed: %s", key, exc)
            self._set_status(key, deployment_id, FAILED, f"model {model_ref} cannot be deployed: {exc}", deployed=False)
            return
        with self._status_lock:
            doc = self.store.get(DEPLOYMENT_KIND, key)
            if doc is None or doc.get("id") != deployment_id:
                return  # deleted while loading: serve nothing
            runtime = embedding.runtime_choice(model)
            self.serving.add(ServedModel(served_name, model_ref, path, deployment_id, model, runtime))
            on = f" by {runtime.summary()}" if runtime is not None else ""
            self.store.update(
                DEPLOYMENT_KIND,
                key,
                {
                    "status_details": {
                        "status": READY,
                        "description": f"{model_ref} is served as {served_name!r} on /v1/embeddings{on}",
                    },
                    "deployed": True,
                },
            )

    def _start_loading(self, doc: dict[str, Any]) -> None:
        key = f"{doc['namespace']}/{doc['name']}"
        model_ref = doc.get("model_version") or doc["model"]  # older deployments: resolved at load
        threading.Thread(target=self._load, args=(key, doc["id"], model_ref), daemon=True, name=f"deploy-{key}").start()
