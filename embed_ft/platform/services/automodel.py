"""v2 automodel jobs (``/apis/customization/v2/workspaces/{ws}/automodel/jobs``) run by the platform's own trainer.

A v2 job is addressed by its name in a workspace: store kind ``automodel_job`` (id ``ws/name``) holds the request's
canonical spec (Helix's ``AutomodelJobOutput``: the request's spec plus ``backend`` and ``output``) and the id of
the customization job (``customization_job``, ``cust-...``) that ``training.service`` runs, the same queue, worker
and restart recovery as v1's. Its status is that job's, in v2 words (``running`` -> ``active``, ``failed`` ->
``error``); a failed job's text is ``error_details.message``.

The training data is a fileset of the v2 Files service (``v2_filesets``), checked at create (404/422 naming the
field, as Helix's own create checks dataset access) and fetched when the job starts. The output is the model entity
``{ws}/{spec.output.name}`` (generated like Helix's when not given), registered in this platform's store: a v2
deployment config naming it serves it. A name that exists already is a 409 at create, never an overwrite.
"""

from __future__ import annotations

from typing import Any

from embed_ft.nemo.status import ACTIVE, CREATED, ERROR, FAILED, RUNNING, TERMINAL_JOB_STATUSES
from embed_ft.nemo.v2.contract import AutomodelJobRequest, AutomodelOutputResponse

from ..settings import PlatformSettings
from ..store import AlreadyExists, EntityStore, new_id, utc_now
from .automodel_spec import hyperparameters, output_name, precision
from .entities import MODEL_KIND
from .errors import ConflictError, InvalidInputError, checked_name, found
from .jobs import status_log_entry
from .model_weights import ModelNotFound, resolve_model_path, split_model_ref
from .training.service import JOB_KIND, CustomizationTrainer, empty_status_details
from .v2_filesets import FilesetFetcher, parse_fileset_ref

AUTOMODEL_KIND = "automodel_job"
V2_JOB_STATUS = {RUNNING: ACTIVE, FAILED: ERROR}  # the trainer's v1 words -> Helix's
OUTPUT_RESULT = "output-model"  # the one result of a completed job: its output model entity (JSON)


class AutomodelService:
    def __init__(
        self, settings: PlatformSettings, store: EntityStore, trainer: CustomizationTrainer, filesets: FilesetFetcher
    ) -> None:
        self.settings = settings
        self.store = store
        self.trainer = trainer
        self.filesets = filesets

    # ---- create

    def create(self, workspace: str, request: AutomodelJobRequest) -> dict[str, Any]:
        ws = checked_name(workspace, "workspace")
        spec = request.spec
        key = f"{ws}/{request.name}"
        if self.store.get(AUTOMODEL_KIND, key) is not None:
            raise ConflictError(f"automodel job {key} already exists")
        hp = hyperparameters(spec)
        try:
            resolve_model_path(self.store, spec.model)
            model_ns, model_name, _ = split_model_ref(spec.model)
        except ModelNotFound as exc:
            raise InvalidInputError("spec.model", f"spec.model: {exc}") from None
        training = parse_fileset_ref(spec.dataset.training, ws, "spec.dataset.training")
        self.filesets.check(training, "spec.dataset.training")
        validation = None
        if spec.dataset.validation:
            validation = parse_fileset_ref(spec.dataset.validation, ws, "spec.dataset.validation")
            self.filesets.check(validation, "spec.dataset.validation", required=False)
        out = checked_name(output_name(spec, training.name, request.name), "spec.output.name")
        if self.store.get(MODEL_KIND, f"{ws}/{out}") is not None or any(
            r.get("output_model") == f"{ws}/{out}" and r.get("status") not in TERMINAL_JOB_STATUSES
            for r in self.store.list(JOB_KIND, namespace=ws)
        ):
            raise ConflictError(f"spec.output.name: model {ws}/{out} exists already (or a job is producing it)")
        output = AutomodelOutputResponse(
            name=out, type="model", fileset=out, description=spec.output.description if spec.output else None
        )
        canonical = {**spec.body(), "backend": "automodel", "output": output.model_dump(exclude_none=True)}
        job_id = new_id("cust")
        now = utc_now()
        record = {
            "id": job_id,
            "namespace": ws,
            "name": request.name,
            "description": request.description,
            "spec": canonical,
            "custom_fields": request.custom_fields or {},
            "created_at": now,
        }
        job = {
            "id": job_id,
            "namespace": ws,
            "name": request.name,
            "description": request.description or f"automodel job {key}",
            "config": None,
            "config_snapshot": {
                "target": {"namespace": model_ns, "name": spec.model.split("/", 1)[1], "base_model": spec.model},
                "training_options": [{"training_type": "sft", "finetuning_type": hp["finetuning_type"]}],
                "training_precision": precision(spec),
                "max_seq_length": hp.get("max_seq_length"),
            },
            "dataset": {"namespace": training.workspace, "name": training.name},
            "v2_dataset": {"training": training.__dict__, "validation": validation.__dict__ if validation else None},
            "hyperparameters": hp,
            "dataset_parameters": None,
            "integrations": [],
            "custom_fields": request.custom_fields or {},
            "output_model": f"{ws}/{out}",
            "status": CREATED,
            "status_details": {**empty_status_details(), "status": CREATED},
            "status_logs": [{**status_log_entry(CREATED), "updated_at": now}],
            "created_at": now,
        }
        with self.store.atomic():
            try:
                self.store.create(AUTOMODEL_KIND, key, record)
            except AlreadyExists:
                raise ConflictError(f"automodel job {key} already exists") from None
            self.store.create(JOB_KIND, job_id, job)
        self.trainer.submit(job_id)
        return self.get(ws, request.name)

    # ---- read

    def _record(self, workspace: str, name: str) -> dict[str, Any]:
        return found(self.store.get(AUTOMODEL_KIND, f"{workspace}/{name}"), f"automodel job {workspace}/{name}")

    def document(self, record: dict[str, Any]) -> dict[str, Any]:
        """The v2 job (Helix's ``BaseJob``): canonical spec, v2 status, details and, on error, ``error_details``."""
        job = self.store.get(JOB_KIND, record["id"]) or {}
        status = str(job.get("status") or FAILED)
        last = (job.get("status_logs") or [{}])[-1]
        message = last.get("detail") or last.get("message") or ""
        details = {k: v for k, v in (job.get("status_details") or {}).items() if k != "status"}
        v2_status = V2_JOB_STATUS.get(status, status)
        error = {"message": message} if status == FAILED else None
        return {
            "id": record["id"],
            "name": record["name"],
            "workspace": record["namespace"],
            "description": record.get("description"),
            "spec": record["spec"],
            "status": v2_status,
            "status_details": {**details, "message": message},
            "error_details": error,
            "custom_fields": record.get("custom_fields") or {},
            "created_at": record.get("created_at"),
            "updated_at": job.get("updated_at") or record.get("updated_at"),
            "steps": [_training_step(v2_status, details, job.get("hyperparameters") or {}, error)],
        }

    def get(self, workspace: str, name: str) -> dict[str, Any]:
        return self.document(self._record(workspace, name))

    def list(self, workspace: str) -> list[dict[str, Any]]:
        return [self.document(r) for r in self.store.list(AUTOMODEL_KIND, namespace=workspace)]

    def cancel(self, workspace: str, name: str) -> dict[str, Any]:
        record = self._record(workspace, name)
        job = self.store.get(JOB_KIND, record["id"]) or {}
        if job.get("status") in TERMINAL_JOB_STATUSES or not job:
            status = V2_JOB_STATUS.get(str(job.get("status")), job.get("status"))
            raise ConflictError(f"automodel job {workspace}/{name} is already {status}; nothing to cancel")
        self.trainer.cancel(record["id"])
        return self.document(record)

    def delete(self, workspace: str, name: str) -> None:
        """Forget an ended job (409 while it is active, as Helix); its output model stays."""
        record = self._record(workspace, name)
        job = self.store.get(JOB_KIND, record["id"]) or {}
        if job and job.get("status") not in TERMINAL_JOB_STATUSES:
            raise ConflictError(f"automodel job {workspace}/{name} is {job.get('status')}: cancel it first")
        with self.store.atomic():
            self.store.delete(AUTOMODEL_KIND, f"{workspace}/{name}")
            self.store.delete(JOB_KIND, record["id"])

    def output(self, workspace: str, name: str) -> dict[str, Any] | None:
        """The output model of a completed job (``OUTPUT_RESULT``), else None."""
        doc = self.get(workspace, name)
        if doc["status"] != "completed":
            return None
        out = doc["spec"]["output"]
        model = self.store.get(MODEL_KIND, f"{workspace}/{out['name']}") or {}
        return {**out, "model": f"{workspace}/{out['name']}", "base_model": model.get("base_model")}


def _training_step(
    status: str, details: dict[str, Any], hp: dict[str, Any], error: dict[str, Any] | None
) -> dict[str, Any]:
    """Helix's ``steps[name="training"].tasks[]``: where a cluster's automodel job reports its progress."""
    steps_per_epoch = details.get("steps_per_epoch") or 0
    planned = hp.get("max_steps") or steps_per_epoch * int(hp.get("epochs") or 1) or None  # max_steps wins (HF)
    progress = {
        "phase": "training",
        "step": details.get("steps_completed", 0),
        "max_steps": planned,
        "percentage_done": details.get("percentage_done", 0.0),
        "train_loss": details.get("train_loss"),
    }
    task = {"name": "training", "status": status, "status_details": progress, "error_details": error}
    return {"name": "training", "status": status, "tasks": [task]}
