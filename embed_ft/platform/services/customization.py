"""Customizer: targets, configs and the creation of fine-tuning jobs (``training.service`` runs them).

Store kinds: ``customization_target`` and ``customization_config`` (id ``ns/name``, config names carry ``@vN``),
``customization_job`` (id ``cust-...``). Request bodies arrive checked for shape (pydantic, in the api); the
rules that need the store live here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from embed_ft.nemo.status import CREATED, FAILED, TERMINAL_JOB_STATUSES
from embed_ft.nemo.v1.customization import FINETUNING_TYPES

from ..paths import MAX_SEGMENT_LENGTH, InvalidPathError, ensure_within
from ..settings import PlatformSettings
from ..store import AlreadyExists, EntityStore, new_id, utc_now
from .entities import DATASET_KIND
from .errors import ConflictError, InvalidInputError, NotFoundError, checked_name, split_ref
from .jobs import status_log_entry
from .model_weights import (
    TARGET_KIND,
    ModelNotFound,
    bundled_minilm_path,
    download_hub_model,
    hub_repo_id,
    is_sentence_transformers_folder,
    target_local_path,
)
from .training.service import JOB_KIND, CustomizationTrainer, empty_status_details

CONFIG_KIND = "customization_config"
MODEL_PRECISIONS = ("int8", "bf16", "fp16", "fp32", "fp8-mixed", "bf16-mixed")  # SDK 1.5's ModelPrecision
WORKER_LOG = "training-worker"


def job_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored job in the answer's shape (the SDK's ``CustomizationJob``): ``status_details`` carry ``created_at`` and
    ``updated_at``; ``config_snapshot`` its ``base_model``, ``precision`` and the ``training_option`` the job uses."""
    snapshot = dict(_object(doc.get("config_snapshot")))  # a stored field of the wrong type reads as empty
    target = _object(snapshot.get("target"))
    hp = _object(doc.get("hyperparameters"))
    stored_options = snapshot.get("training_options")
    options = [o for o in stored_options if isinstance(o, dict)] if isinstance(stored_options, list) else []
    chosen = next(
        (
            o
            for o in options
            if (o.get("training_type"), o.get("finetuning_type"))
            == (hp.get("training_type"), hp.get("finetuning_type"))
        ),
        options[0] if options else None,
    )
    if target.get("base_model"):
        snapshot.setdefault("base_model", target["base_model"])
    precision = next(
        (p for p in (snapshot.get("training_precision"), target.get("precision")) if p in MODEL_PRECISIONS), "fp32"
    )
    snapshot.setdefault("precision", precision)
    if chosen is not None:
        snapshot.setdefault("training_option", chosen)
    if snapshot.get("max_seq_length") is None and hp.get("max_seq_length"):
        snapshot["max_seq_length"] = hp["max_seq_length"]
    details = {
        "created_at": doc.get("created_at"),
        "updated_at": doc.get("updated_at"),
        **_object(doc.get("status_details")),
    }
    return {**doc, "config_snapshot": snapshot, "status_details": details}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _check_versioned_name(name: str, job_id: str, field: str) -> None:
    """The model the job registers, ``<name>@<job id>``, is a valid name: checked now, not after training."""
    versioned = f"{name}@{job_id}"
    if len(versioned.encode("utf-8")) > MAX_SEGMENT_LENGTH:
        room = MAX_SEGMENT_LENGTH - len(job_id) - 1
        raise InvalidInputError(
            field,
            f"{field}: the model name {name[:60]!r}... is {len(name)} characters; the job "
            f"registers it as '<name>@{job_id}' and names are limited to {MAX_SEGMENT_LENGTH} "
            f"bytes, so at most {room} characters are left for it",
        )
    checked_name(versioned, field)


class CustomizationService:
    def __init__(self, settings: PlatformSettings, store: EntityStore, trainer: CustomizationTrainer) -> None:
        self.settings = settings
        self.store = store
        self.trainer = trainer

    def _get(self, kind: str, key: str, what: str) -> dict[str, Any]:
        doc = self.store.get(kind, key)
        if doc is None:
            raise NotFoundError(f"{what} {key} not found")
        return doc

    # ---- targets

    def create_target(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Register a base model: a local sentence-transformers folder (file:// or absolute model_path) or a Hub id."""
        namespace, name = checked_name(spec["namespace"], "namespace"), checked_name(spec["name"], "target name")
        target_id = f"{namespace}/{name}"
        local = target_local_path(spec)
        repo_id = None
        if local is not None:
            field = "model_uri" if str(spec.get("model_uri") or "").startswith("file:") else "model_path"
            self._check_confined(target_id, local, field)
            if not is_sentence_transformers_folder(local):
                raise InvalidInputError(
                    "model_path",
                    f"target {target_id}: {local} is not a sentence-transformers "
                    "model folder (no modules.json or config.json)",
                )
        else:
            repo_id = hub_repo_id(spec)
            if repo_id is None:
                raise InvalidInputError(
                    "model_uri",
                    f"target {target_id}: give model_uri 'file:///<folder>', an "
                    "absolute model_path folder, or a Hugging Face Hub id as base_model or "
                    "model_uri 'hf://<org>/<name>'",
                )
        doc = {
            **spec,
            "id": new_id("customization_target"),
            "namespace": namespace,
            "name": name,
            "base_model": spec.get("base_model") or repo_id or f"{namespace}/{name.split('@')[0]}",
            "enabled": spec.get("enabled", True),
            "status": "ready" if local is not None else "pending",
        }
        if local is not None:
            doc["local_path"] = str(local.resolve())
            doc.setdefault("model_uri", local.resolve().as_uri())
        try:
            doc = self.store.create(TARGET_KIND, target_id, doc)
        except AlreadyExists:
            raise ConflictError(f"customization target {target_id} already exists") from None
        if repo_id is not None:
            threading.Thread(
                target=self._download_target,
                args=(target_id, repo_id),
                daemon=True,
                name=f"target-download-{target_id}",
            ).start()
        return doc

    def _check_confined(self, target_id: str, local: Path, field: str) -> None:
        """A target's folder lies in this platform's stores, the bundled model or an operator's ``model_roots``:
        a request must not make the platform load (and serve) another home's or any other folder's weights."""
        roots = [*self.settings.model_store_roots]
        try:
            roots.append(bundled_minilm_path())
        except ModelNotFound:
            pass
        for root in roots:
            try:
                ensure_within(root, local)
                return
            except (InvalidPathError, OSError, ValueError):
                continue
        raise InvalidInputError(
            field,
            f"{field} of target {target_id}: {str(local)[:200]!r} is outside the folders "
            "targets may load from (this platform's models, Data Store and cache folders, the "
            "bundled model and $EMBED_FT_MODEL_ROOTS: " + ", ".join(map(str, roots)) + ")",
        )

    def _download_target(self, target_id: str, repo_id: str) -> None:
        try:
            path = download_hub_model(repo_id, self.settings.cache_dir / "hub")
            if not is_sentence_transformers_folder(path):
                raise ModelNotFound(f"Hub repo {repo_id} is not a sentence-transformers/transformers model")
            self.store.update(
                TARGET_KIND,
                target_id,
                {
                    "status": "ready",
                    "local_path": str(path),
                    "status_details": {"message": f"downloaded {repo_id} from the Hugging Face Hub"},
                },
            )
        except Exception as exc:  # offline, unknown repo, ...: the target says why
            self.store.update(
                TARGET_KIND,
                target_id,
                {
                    "status": "failed",
                    "status_details": {
                        "message": f"could not fetch {repo_id} from the Hugging Face Hub: {type(exc).__name__}: {exc}"
                    },
                },
            )

    def get_target(self, key: str) -> dict[str, Any]:
        return self._get(TARGET_KIND, key, "customization target")

    def patch_target(self, key: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.get_target(key)
        return self.store.update(TARGET_KIND, key, patch)  # type: ignore[return-value]

    def delete_target(self, key: str) -> None:
        self.get_target(key)
        self.store.delete(TARGET_KIND, key)

    # ---- configs

    def create_config(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a versioned config; a name without ``@vN`` becomes ``name@v1`` (jobs reference configs by version)."""
        namespace = checked_name(body["namespace"], "namespace")
        name = checked_name(body["name"] if "@" in body["name"] else f"{body['name']}@v1", "config name")
        target_ns, target_name = split_ref(body["target"], "target")
        if self.store.get(TARGET_KIND, f"{target_ns}/{target_name}") is None:
            raise NotFoundError(
                f"customization target {body['target']} not found; list them with GET /v1/customization/targets"
            )
        doc = {
            **body,
            "id": new_id("customization_config"),
            "namespace": namespace,
            "name": name,
            "target": f"{target_ns}/{target_name}",
        }
        try:
            return self.store.create(CONFIG_KIND, f"{namespace}/{name}", doc)
        except AlreadyExists:
            raise ConflictError(f"customization config {namespace}/{name} already exists") from None

    def get_config(self, key: str) -> dict[str, Any]:
        return self._get(CONFIG_KIND, key, "customization config")

    def delete_config(self, key: str) -> None:
        if not self.store.delete(CONFIG_KIND, key):
            raise NotFoundError(f"customization config {key} not found")

    # ---- jobs

    def _ready_config(self, config_ref: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        """(namespace, name, config, target) of a versioned config whose target can train now."""
        if "@" not in config_ref:
            raise InvalidInputError("config", f"config {config_ref!r} needs a version, e.g. '{config_ref}@v1'")
        config_ns, config_name = split_ref(config_ref, "config")
        config = self.store.get(CONFIG_KIND, f"{config_ns}/{config_name}")
        if config is None:
            raise NotFoundError(f"customization config {config_ref} not found")
        target = self.store.get(TARGET_KIND, config["target"])
        if target is None:
            raise NotFoundError(f"customization target {config['target']} (of config {config_ref}) not found")
        if not target.get("enabled", True):
            raise InvalidInputError(
                "config", f"customization target {config['target']} is disabled; enable it with PATCH"
            )
        if target.get("status") != "ready":
            raise InvalidInputError(
                "config",
                f"customization target {config['target']} is not ready "
                f"(status {target.get('status')!r}): "
                f"{(target.get('status_details') or {}).get('message', '')}",
            )
        return config_ns, config_name, config, target

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check a job request against the store, create the job and queue it. ``body["dataset"]`` is
        ``{"namespace", "name"}`` or ``"ns/name"``; ``body["hyperparameters"]`` the checked hyperparameters."""
        config_ns, config_name, config, target = self._ready_config(body["config"])
        dataset = body["dataset"]
        if isinstance(dataset, str):
            dataset = dict(zip(("namespace", "name"), split_ref(dataset, "dataset"), strict=True))
        checked_name(dataset["namespace"], "dataset namespace"), checked_name(dataset["name"], "dataset name")
        if self.store.get(DATASET_KIND, f"{dataset['namespace']}/{dataset['name']}") is None:
            raise NotFoundError(
                f"dataset {dataset['namespace']}/{dataset['name']} not found in the Entity Store; "
                "register it with POST /v1/datasets"
            )
        hp = body["hyperparameters"]
        training_type, finetuning_type = hp["training_type"], hp["finetuning_type"]
        if finetuning_type not in FINETUNING_TYPES:
            raise InvalidInputError(
                "hyperparameters.finetuning_type",
                f"hyperparameters.finetuning_type {finetuning_type!r} is not one of {', '.join(FINETUNING_TYPES)}",
            )
        offered = {(o.get("training_type"), o.get("finetuning_type")) for o in config.get("training_options") or []}
        if offered and (training_type, finetuning_type) not in offered:
            raise InvalidInputError(
                "hyperparameters",
                f"config {body['config']} has no training option for "
                f"training_type {training_type!r} with finetuning_type {finetuning_type!r}",
            )

        job_id = new_id("cust")
        namespace = checked_name(body.get("namespace") or config_ns, "namespace")
        output_model = body.get("output_model")
        if output_model:
            if "@" in output_model:
                raise InvalidInputError(
                    "output_model",
                    f"output_model {output_model!r} must not carry a version: the job appends '@<job id>'",
                )
            out_ns, out_name = split_ref(output_model, "output_model")
        else:
            out_ns = namespace
            out_name = checked_name(body.get("name") or f"{config_name.split('@')[0]}-sft", "output model name")
        _check_versioned_name(out_name, job_id, "output_model" if output_model else "name")
        now = utc_now()
        doc = {
            "id": job_id,
            "namespace": namespace,
            "name": body.get("name"),
            "description": body.get("description"),
            "project": body.get("project"),
            "config": f"{config_ns}/{config_name}",
            "config_snapshot": {**config, "target": target},
            "dataset": dataset,
            "hyperparameters": hp,
            "dataset_parameters": body.get("dataset_parameters"),
            "integrations": body.get("integrations") or [],
            "custom_fields": body.get("custom_fields") or {},
            "ownership": body.get("ownership"),
            "output_model": f"{out_ns}/{out_name}@{job_id}",
            "status": CREATED,
            "status_details": {**empty_status_details(), "status": CREATED},
            "status_logs": [{**status_log_entry(CREATED), "updated_at": now}],
            "created_at": now,
        }
        created = self.store.create(JOB_KIND, job_id, doc)
        self.trainer.submit(job_id)
        return job_document(created)  # as created (the queue has moved it to pending meanwhile)

    def get_job(self, job_id: str) -> dict[str, Any]:
        doc = self.store.get(JOB_KIND, job_id)
        if doc is None:
            raise NotFoundError(f"customization job {job_id!r} not found")
        return job_document(doc)

    def list_jobs(self) -> list[dict[str, Any]]:
        return [job_document(doc) for doc in self.store.list(JOB_KIND)]

    def job_status(self, job_id: str) -> dict[str, Any]:
        """The ``/status`` document: status, every status detail (defaults filled in), status logs."""
        doc = self.get_job(job_id)
        details = {k: v for k, v in (doc.get("status_details") or {}).items() if k != "status"}
        return {
            "id": job_id,
            "status": doc["status"],
            **{**empty_status_details(), **details},
            "status_logs": doc.get("status_logs") or [],
        }

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        doc = self.get_job(job_id)
        if doc["status"] in TERMINAL_JOB_STATUSES:
            raise ConflictError(f"customization job {job_id} is already {doc['status']}; nothing to cancel")
        return job_document(self.trainer.cancel(job_id))

    def container_log(self, job_id: str) -> str:
        """The training worker's stdout/stderr (empty until the worker starts)."""
        self.get_job(job_id)
        path = Path(self.settings.jobs_dir) / job_id / "container.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def container_logs(self, job_id: str) -> dict[str, Any]:
        """``/container-logs`` as the SDK's ``JobLogs``: one entry (the training worker) with its output, and the
        job's error when it failed."""
        doc = self.get_job(job_id)
        text = self.container_log(job_id)
        entry = {
            "object": "container_logs",
            "logs": {"text": text, "lines": text.splitlines()},
            "status": {"phase": doc["status"]},
        }
        answer: dict[str, Any] = {"entries": {WORKER_LOG: entry}}
        if doc["status"] == FAILED:
            last = (doc.get("status_logs") or [{}])[-1]
            answer["error"] = {
                "message": last.get("detail") or last.get("message"),
                "timestamp": last.get("updated_at"),
            }
        return answer
