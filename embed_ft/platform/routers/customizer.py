"""Customizer (``{NEMO_URL}/v1/customization/...``): targets, configs and fine-tuning jobs.

Store kinds: ``customization_target`` and ``customization_config`` (id ``ns/name``, config names carry
``@vN``), ``customization_job`` (id ``cust-...``). Jobs are run by ``training.CustomizationTrainer``
(``ctx.services["trainer"]``), one at a time in a worker process.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import models
from .shared import checked_name as _checked
from .shared import request_ctx as _ctx
from ..store import AlreadyExists, new_id, utc_now
from ..training import JOB_KIND, TERMINAL_STATUSES, CustomizationTrainer, empty_status_details
from .entities import DATASET_KIND, paginated_list

log = logging.getLogger("embed_ft.platform.customizer")

router = APIRouter()

TARGET_KIND = models.TARGET_KIND
CONFIG_KIND = "customization_config"
FINETUNING_TYPES = ("lora", "lora_merged", "all_weights", "p_tuning")
OPTIMIZERS = ("adam_with_cosine_annealing", "adam_with_flat_lr", "adamw_with_cosine_annealing", "adamw_with_flat_lr")


# ---------------------------------------------------------------------------------------------- bodies


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    base_model: str | None = None
    enabled: bool = True
    model_path: str | None = None
    model_uri: str | None = None
    num_parameters: int | None = Field(None, ge=0)
    precision: str | None = None
    description: str | None = None


class TargetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    description: str | None = None
    num_parameters: int | None = Field(None, ge=0)
    precision: str | None = None
    custom_fields: dict[str, Any] | None = None


class TrainingOption(BaseModel):
    model_config = ConfigDict(extra="allow")
    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["lora", "lora_merged", "all_weights", "p_tuning"] = "all_weights"
    num_gpus: int = Field(1, ge=0)
    num_nodes: int = Field(1, ge=1)
    micro_batch_size: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    use_sequence_parallel: bool = False


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    target: str
    training_options: list[TrainingOption] = Field(default_factory=lambda: [TrainingOption()], min_length=1)
    training_precision: str | None = None
    max_seq_length: int | None = Field(None, ge=1)
    description: str | None = None
    project: str | None = None
    custom_fields: dict[str, Any] | None = None


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str
    name: str


class Hyperparameters(BaseModel):
    # Unknown keys are refused: a typo ("learning_rte") must not silently train with the default.
    model_config = ConfigDict(extra="forbid")
    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["lora", "lora_merged", "all_weights", "p_tuning"] = "all_weights"
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(5e-6, gt=0)
    max_steps: int | None = Field(None, ge=-1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float | None = Field(None, ge=0, lt=1)
    adam_beta2: float | None = Field(None, ge=0, lt=1)
    seed: int = Field(42, ge=0)
    val_check_interval: float | None = Field(None, gt=0)
    log_every_n_steps: int | None = Field(None, ge=1)
    min_learning_rate: float | None = Field(None, ge=0)
    optimizer: Literal[OPTIMIZERS] | None = None  # type: ignore[valid-type]
    max_seq_length: int | None = Field(None, ge=1)
    # Method-specific blocks of the NeMo API, accepted and stored (all_weights training reads none of them).
    sft: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    p_tuning: dict[str, Any] | None = None


class DatasetParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    num_hard_negatives: int | None = Field(None, ge=0)
    negative_sample_strategy: Literal["first", "random"] = "first"
    in_batch_negatives: bool = True


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: str
    dataset: DatasetRef | str
    hyperparameters: Hyperparameters
    output_model: str | None = None
    name: str | None = None
    namespace: str | None = None
    description: str | None = None
    project: str | None = None
    dataset_parameters: DatasetParameters | None = None
    integrations: list[dict[str, Any]] | None = None
    custom_fields: dict[str, Any] | None = None
    ownership: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------- helpers


def _split_ref(ref: str, what: str) -> tuple[str, str]:
    """``ns/name`` -> (ns, name), each validated; 422 naming ``what`` otherwise."""
    if not isinstance(ref, str) or ref.count("/") != 1:
        raise HTTPException(422, f"{what} {ref!r} must be of the form 'namespace/name'")
    ns, name = ref.split("/")
    return _checked(ns, f"{what} namespace"), _checked(name, f"{what} name")


def _trainer(request: Request) -> CustomizationTrainer:
    return _ctx(request).services["trainer"]


def _require_job(request: Request, job_id: str) -> dict[str, Any]:
    doc = _ctx(request).store.get(JOB_KIND, job_id)
    if doc is None:
        raise HTTPException(404, f"customization job {job_id!r} not found")
    return doc


def _require_target(request: Request, namespace: str, name: str) -> dict[str, Any]:
    doc = _ctx(request).store.get(TARGET_KIND, f"{namespace}/{name}")
    if doc is None:
        raise HTTPException(404, f"customization target {namespace}/{name} not found")
    return doc


# --------------------------------------------------------------------------------------------- targets


def _download_target(ctx, target_id: str, repo_id: str) -> None:
    try:
        path = models.download_hub_model(repo_id, ctx.settings.cache_dir / "hub")
        if not models.is_sentence_transformers_folder(path):
            raise models.ModelNotFound(f"Hub repo {repo_id} is not a sentence-transformers/transformers model")
        ctx.store.update(TARGET_KIND, target_id, {
            "status": "ready", "local_path": str(path),
            "status_details": {"message": f"downloaded {repo_id} from the Hugging Face Hub"},
        })
    except Exception as exc:  # offline, unknown repo, ...: the target says why
        ctx.store.update(TARGET_KIND, target_id, {
            "status": "failed",
            "status_details": {"message": f"could not fetch {repo_id} from the Hugging Face Hub: {type(exc).__name__}: {exc}"},
        })


@router.get("/v1/customization/targets")
def list_targets(request: Request):
    return paginated_list(request, _ctx(request).store.list(TARGET_KIND))


@router.post("/v1/customization/targets")
def create_target(body: TargetIn, request: Request):
    """Register a base model: a local sentence-transformers folder (file:// or absolute model_path) or a Hub id."""
    ctx = _ctx(request)
    namespace, name = _checked(body.namespace, "namespace"), _checked(body.name, "target name")
    target_id = f"{namespace}/{name}"
    spec = body.model_dump(exclude_none=True)
    local = models.target_local_path(spec)
    repo_id = None
    if local is not None:
        if not models.is_sentence_transformers_folder(local):
            raise HTTPException(422, f"target {target_id}: {local} is not a sentence-transformers model folder "
                                     "(no modules.json or config.json)")
    else:
        repo_id = models.hub_repo_id(spec)
        if repo_id is None:
            raise HTTPException(422, f"target {target_id}: give model_uri 'file:///<folder>', an absolute model_path "
                                     "folder, or a Hugging Face Hub id as base_model or model_uri 'hf://<org>/<name>'")
    doc = {
        **spec,
        "id": new_id("customization_target"),
        "namespace": namespace,
        "name": name,
        "base_model": body.base_model or repo_id or f"{namespace}/{name.split('@')[0]}",
        "enabled": body.enabled,
        "status": "ready" if local is not None else "pending",
    }
    if local is not None:
        doc["local_path"] = str(local.resolve())
        doc.setdefault("model_uri", local.resolve().as_uri())
    try:
        doc = ctx.store.create(TARGET_KIND, target_id, doc)
    except AlreadyExists:
        raise HTTPException(409, f"customization target {target_id} already exists") from None
    if repo_id is not None:
        threading.Thread(target=_download_target, args=(ctx, target_id, repo_id), daemon=True,
                         name=f"target-download-{target_id}").start()
    return doc


@router.get("/v1/customization/targets/{namespace}/{name}")
def get_target(namespace: str, name: str, request: Request):
    return _require_target(request, namespace, name)


@router.patch("/v1/customization/targets/{namespace}/{name}")
def patch_target(namespace: str, name: str, body: TargetPatch, request: Request):
    _require_target(request, namespace, name)
    return _ctx(request).store.update(TARGET_KIND, f"{namespace}/{name}", body.model_dump(exclude_none=True))


@router.delete("/v1/customization/targets/{namespace}/{name}", status_code=204)
def delete_target(namespace: str, name: str, request: Request):
    _require_target(request, namespace, name)
    _ctx(request).store.delete(TARGET_KIND, f"{namespace}/{name}")
    return Response(status_code=204)


# --------------------------------------------------------------------------------------------- configs


@router.get("/v1/customization/configs")
def list_configs(request: Request):
    return paginated_list(request, _ctx(request).store.list(CONFIG_KIND))


@router.post("/v1/customization/configs")
def create_config(body: ConfigIn, request: Request):
    """Create a versioned config; a name without ``@vN`` becomes ``name@v1`` (jobs reference configs by version)."""
    ctx = _ctx(request)
    namespace = _checked(body.namespace, "namespace")
    name = _checked(body.name if "@" in body.name else f"{body.name}@v1", "config name")
    target_ns, target_name = _split_ref(body.target, "target")
    target = ctx.store.get(TARGET_KIND, f"{target_ns}/{target_name}")
    if target is None:
        raise HTTPException(404, f"customization target {body.target} not found; "
                                 "list them with GET /v1/customization/targets")
    doc = {**body.model_dump(exclude_none=True), "id": new_id("customization_config"),
           "namespace": namespace, "name": name, "target": f"{target_ns}/{target_name}"}
    try:
        return ctx.store.create(CONFIG_KIND, f"{namespace}/{name}", doc)
    except AlreadyExists:
        raise HTTPException(409, f"customization config {namespace}/{name} already exists") from None


@router.get("/v1/customization/configs/{namespace}/{name}")
def get_config(namespace: str, name: str, request: Request):
    doc = _ctx(request).store.get(CONFIG_KIND, f"{namespace}/{name}")
    if doc is None:
        raise HTTPException(404, f"customization config {namespace}/{name} not found")
    return doc


@router.delete("/v1/customization/configs/{namespace}/{name}", status_code=204)
def delete_config(namespace: str, name: str, request: Request):
    if not _ctx(request).store.delete(CONFIG_KIND, f"{namespace}/{name}"):
        raise HTTPException(404, f"customization config {namespace}/{name} not found")
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------------ jobs


@router.post("/v1/customization/jobs")
def create_job(body: JobIn, request: Request):
    ctx = _ctx(request)
    store = ctx.store
    if "@" not in body.config:
        raise HTTPException(422, f"config {body.config!r} needs a version, e.g. '{body.config}@v1'")
    config_ns, config_name = _split_ref(body.config, "config")
    config = store.get(CONFIG_KIND, f"{config_ns}/{config_name}")
    if config is None:
        raise HTTPException(404, f"customization config {body.config} not found")
    target = store.get(TARGET_KIND, config["target"])
    if target is None:
        raise HTTPException(404, f"customization target {config['target']} (of config {body.config}) not found")
    if not target.get("enabled", True):
        raise HTTPException(422, f"customization target {config['target']} is disabled; enable it with PATCH")
    if target.get("status") != "ready":
        raise HTTPException(422, f"customization target {config['target']} is not ready "
                                 f"(status {target.get('status')!r}): {(target.get('status_details') or {}).get('message', '')}")

    dataset = body.dataset if isinstance(body.dataset, DatasetRef) else DatasetRef(
        **dict(zip(("namespace", "name"), _split_ref(body.dataset, "dataset"))))
    _checked(dataset.namespace, "dataset namespace"), _checked(dataset.name, "dataset name")
    if store.get(DATASET_KIND, f"{dataset.namespace}/{dataset.name}") is None:
        raise HTTPException(404, f"dataset {dataset.namespace}/{dataset.name} not found in the Entity Store; "
                                 "register it with POST /v1/datasets")

    hp = body.hyperparameters
    if hp.finetuning_type != "all_weights":
        raise HTTPException(422, f"hyperparameters.finetuning_type {hp.finetuning_type!r} is not available on the "
                                 "local platform; it trains 'all_weights'")
    offered = {(o.get("training_type"), o.get("finetuning_type")) for o in config.get("training_options") or []}
    if offered and (hp.training_type, hp.finetuning_type) not in offered:
        raise HTTPException(422, f"config {body.config} has no training option for training_type "
                                 f"{hp.training_type!r} with finetuning_type {hp.finetuning_type!r}")

    job_id = new_id("cust")
    namespace = _checked(body.namespace or config_ns, "namespace")
    if body.output_model:
        if "@" in body.output_model:
            raise HTTPException(422, f"output_model {body.output_model!r} must not carry a version: "
                                     "the job appends '@<job id>'")
        out_ns, out_name = _split_ref(body.output_model, "output_model")
    else:
        out_ns, out_name = namespace, _checked(body.name or f"{config_name.split('@')[0]}-sft", "output model name")
    hyperparameters = hp.model_dump(exclude_none=True)
    now = utc_now()
    doc = {
        "id": job_id,
        "namespace": namespace,
        "name": body.name,
        "description": body.description,
        "project": body.project,
        "config": f"{config_ns}/{config_name}",
        "config_snapshot": {**config, "target": target},
        "dataset": dataset.model_dump(),
        "hyperparameters": hyperparameters,
        "dataset_parameters": body.dataset_parameters.model_dump() if body.dataset_parameters else None,
        "integrations": body.integrations or [],
        "custom_fields": body.custom_fields or {},
        "ownership": body.ownership,
        "output_model": f"{out_ns}/{out_name}@{job_id}",
        "status": "created",
        "status_details": {**empty_status_details(), "status": "created"},
        "status_logs": [{"updated_at": now, "message": "created", "detail": None}],
        "created_at": now,
    }
    created = store.create(JOB_KIND, job_id, doc)
    _trainer(request).submit(job_id)
    return created


@router.get("/v1/customization/jobs")
def list_jobs(request: Request):
    return paginated_list(request, _ctx(request).store.list(JOB_KIND))


@router.get("/v1/customization/jobs/{job_id}")
def get_job(job_id: str, request: Request):
    return _require_job(request, job_id)


@router.get("/v1/customization/jobs/{job_id}/status")
def get_job_status(job_id: str, request: Request):
    doc = _require_job(request, job_id)
    details = {k: v for k, v in (doc.get("status_details") or {}).items() if k != "status"}
    return {"id": job_id, "status": doc["status"], **{**empty_status_details(), **details},
            "status_logs": doc.get("status_logs") or []}


@router.post("/v1/customization/jobs/{job_id}/cancel")
def cancel_job(job_id: str, request: Request):
    doc = _require_job(request, job_id)
    if doc["status"] in TERMINAL_STATUSES:
        raise HTTPException(409, f"customization job {job_id} is already {doc['status']}; nothing to cancel")
    return _trainer(request).cancel(job_id)


@router.get("/v1/customization/jobs/{job_id}/container-logs", response_class=PlainTextResponse)
def get_container_logs(job_id: str, request: Request):
    """The training worker's stdout/stderr (empty until the worker starts)."""
    _require_job(request, job_id)
    path = Path(_ctx(request).settings.jobs_dir) / job_id / "container.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


# ---------------------------------------------------------------------------------------------- life cycle


def on_startup(ctx) -> None:
    models.seed_defaults(ctx.store)
    trainer = CustomizationTrainer(ctx)
    ctx.services["trainer"] = trainer
    trainer.start()


def on_shutdown(ctx) -> None:
    trainer = ctx.services.pop("trainer", None)
    if trainer is not None:
        trainer.shutdown()
