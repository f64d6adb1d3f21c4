"""The Evaluator's documents: configs and targets (id ``ns/name``), jobs (checked, then queued on the
``EvaluationService``) and their results."""

from __future__ import annotations

from typing import Any, Callable

from embed_ft.nemo.status import COMPLETED, CREATED, TERMINAL_JOB_STATUSES

from ...store import AlreadyExists, EntityStore, new_id, utc_now
from ..errors import ConflictError, InvalidInputError, NotFoundError, checked_name
from ..jobs import status_log_entry
from .service import JOB_KIND, RESULT_KIND, EvaluationService
from .validation import optional_str, parse_ref, require_dict, split_secrets, validate_config, validate_target

CONFIG_KIND = "evaluation_config"
TARGET_KIND = "evaluation_target"
DEFAULT_NAMESPACE = "default"
RESULT_FIELDS = ("job", "id", "files_url", "tasks", "namespace", "created_at")


def deleted(resource_id: str) -> dict[str, Any]:
    """The Evaluator's answer to a delete."""
    return {"message": "Resource deleted successfully.", "id": resource_id, "deleted_at": utc_now()}


class EvaluatorResources:
    def __init__(self, store: EntityStore, service: EvaluationService) -> None:
        self.store = store
        self.service = service

    # ---- configs and targets

    def create_named(self, kind: str, body: Any) -> dict[str, Any]:
        """Create a config (``kind`` CONFIG_KIND) or a target (TARGET_KIND; its api keys stay in memory)."""
        what = kind.replace("evaluation_", "")
        validate: Callable[[Any], dict[str, Any]] = validate_config if kind == CONFIG_KIND else validate_target
        body = require_dict(body, what)
        name = body.get("name")
        namespace = body.get("namespace") or DEFAULT_NAMESPACE
        if not isinstance(name, str):
            raise InvalidInputError(f"{what}.name", f"{what}.name is required (a string)")
        checked_name(namespace, f"{what} namespace")
        checked_name(name, f"{what} name")
        doc = {**validate(body), "name": name, "namespace": namespace, "id": f"{namespace}/{name}"}
        secrets: dict[str, str] = {}
        if kind == TARGET_KIND:
            doc, secrets = split_secrets(doc)
        try:
            created = self.store.create(kind, doc["id"], doc)
        except AlreadyExists:
            raise ConflictError(f"evaluation {what} {doc['id']!r} already exists") from None
        if secrets:
            self.service.target_secrets[doc["id"]] = secrets
        return created

    def get_named(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        doc = self.store.get(kind, f"{namespace}/{name}")
        if doc is None:
            raise NotFoundError(f"evaluation {kind.replace('evaluation_', '')} {namespace}/{name!s} not found")
        return doc

    def delete_named(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.get_named(kind, namespace, name)
        self.store.delete(kind, f"{namespace}/{name}")
        if kind == TARGET_KIND:
            self.service.target_secrets.pop(f"{namespace}/{name}", None)
        return deleted(f"{namespace}/{name}")

    # ---- jobs

    def _config(self, config: Any) -> dict[str, Any]:
        if config is None:
            raise InvalidInputError(
                "config", "config is required: an inline retriever config or a 'namespace/name' reference"
            )
        if isinstance(config, str):
            ns, name = parse_ref(config, "config")
            stored = self.store.get(CONFIG_KIND, f"{ns}/{name}")
            if stored is None:
                raise NotFoundError(
                    f"evaluation config {config!r} not found; create it with POST /v1/evaluation/configs"
                )
            config = stored
        return validate_config(config)

    def _target(self, target: Any) -> tuple[dict[str, Any], dict[str, str]]:
        """The checked target (api keys redacted) and its api keys."""
        if target is None:
            raise InvalidInputError(
                "target", "target is required: an inline retriever target or a 'namespace/name' reference"
            )
        if isinstance(target, str):
            ns, name = parse_ref(target, "target")
            stored = self.store.get(TARGET_KIND, f"{ns}/{name}")
            if stored is None:
                raise NotFoundError(
                    f"evaluation target {target!r} not found; create it with POST /v1/evaluation/targets"
                )
            return validate_target(stored), dict(self.service.target_secrets.get(stored["id"], {}))
        return split_secrets(validate_target(target))

    def create_job(self, body: Any) -> dict[str, Any]:
        body = require_dict(body, "body")
        namespace = body.get("namespace")
        if namespace is not None:
            checked_name(namespace, "namespace")
        for key in ("description", "project"):
            optional_str(body, key, "body")
        custom_fields = body.get("custom_fields")
        if custom_fields is not None and not isinstance(custom_fields, dict):
            raise InvalidInputError(
                "custom_fields", f"custom_fields must be a JSON object, got {type(custom_fields).__name__}"
            )
        config = self._config(body.get("config"))
        target, secrets = self._target(body.get("target"))
        job_id = new_id("eval")
        doc = {
            "id": job_id,
            "namespace": namespace or config.get("namespace") or DEFAULT_NAMESPACE,
            "description": body.get("description"),
            "project": body.get("project"),
            "config": config,
            "target": target,
            "custom_fields": custom_fields if custom_fields is not None else {},
            "status": CREATED,
            "status_details": {"progress": 0, "message": CREATED, "task_status": {}},
            "status_logs": [status_log_entry(CREATED, status=CREATED)],
            "result": None,
            "output_files_url": None,
        }
        self.store.create(JOB_KIND, job_id, doc)
        self.service.submit(job_id, secrets)
        return self.service.get_job(job_id)

    def job_status(self, job_id: str) -> dict[str, Any]:
        details = self.service.get_job(job_id).get("status_details") or {}
        # NeMo's status route has no "status" field (clients poll the job itself); kept in that shape.
        return {
            "job_id": job_id,
            "message": details.get("message"),
            "progress": details.get("progress"),
            "task_status": details.get("task_status", {}),
        }

    def delete_job(self, job_id: str) -> dict[str, Any]:
        doc = self.service.get_job(job_id)
        if doc["status"] not in TERMINAL_JOB_STATUSES:
            raise ConflictError(f"evaluation job {job_id} is {doc['status']}; cancel it before deleting it")
        if doc.get("result"):
            self.store.delete(RESULT_KIND, doc["result"])
        self.store.delete(JOB_KIND, job_id)
        return deleted(job_id)

    def job_results(self, job_id: str) -> dict[str, Any]:
        doc = self.service.get_job(job_id)
        if doc["status"] != COMPLETED:
            detail = (doc.get("status_details") or {}).get("message") or ""
            raise ConflictError(
                f"evaluation job {job_id} is {doc['status']}; results exist once it is completed"
                + (f" ({detail})" if detail else "")
            )
        result = self.store.get(RESULT_KIND, doc["result"]) if doc.get("result") else None
        if result is None:
            raise NotFoundError(f"the results of evaluation job {job_id} are missing from the store")
        return shaped_result(result)

    # ---- results (``/v1/evaluation/results``)

    def list_results(self) -> list[dict[str, Any]]:
        return [shaped_result(result) for result in self.store.list(RESULT_KIND)]

    def get_result(self, result_id: str) -> dict[str, Any]:
        result = self.store.get(RESULT_KIND, result_id)
        if result is None:
            raise NotFoundError(f"evaluation result {result_id!r} not found")
        return shaped_result(result)


def shaped_result(result: dict[str, Any]) -> dict[str, Any]:
    """A stored result in the answer's shape (the SDK's ``EvaluationResult``)."""
    return {key: result[key] for key in RESULT_FIELDS if key in result}
