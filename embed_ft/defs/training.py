"""Training stage: upload the triplets to the Data Store, then fine-tune with the Customizer."""

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue, asset

from ..nemo.customizer import failure_detail, lora_parameters, sft_config_body, sft_job_body
from ..nemo.status import COMPLETED, job_status
from ..resources import CustomizerResource, DataStoreResource, EntityStoreResource
from ..spec.changes import spec_version
from ..spec.experiment import TrainingSpec
from .backend import GPU_STAGE_CONDITION
from .charts import loss_curve_png, markdown_image
from .common import (
    CPU_TAGS,
    GPU_TAGS,
    OWNERS,
    backend_errors_as_failures,
    link,
    markdown_table,
    stable_hash,
)
from .experiment_spec import SPEC_ASSET, run_spec, used_spec_metadata
from .experiments import EXPERIMENTS
from .remote_jobs import REMOTE_JOB_RETRY_POLICY, not_retried_when_terminated, run_remote_job
from .values import FineTunedModel, TripletSplits, UploadedDataset

TRAINING_DATASET_CODE_VERSION = "1"
FINE_TUNED_MODEL_CODE_VERSION = "3"
MANIFEST_PATH = "embed_ft_manifest.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def upload_if_changed(context, ds_client, repo_id: str, files: dict[str, Path], message: str) -> dict[str, Any]:
    """Upload ``files`` (path in repo -> local file) unless the repo already holds exactly these contents.

    A manifest of content hashes travels with the files, so re-materializing unchanged data uploads nothing.
    """
    manifest = {
        path: {"sha256": file_sha256(local), "size": Path(local).stat().st_size} for path, local in files.items()
    }
    remote_files = ds_client.list_files(repo_id)
    if MANIFEST_PATH in remote_files:
        with tempfile.TemporaryDirectory() as tmp:
            remote_manifest = json.loads(Path(ds_client.download(repo_id, MANIFEST_PATH, tmp)).read_text())
        unchanged = remote_manifest == manifest and all(remote_files.get(p) == m["size"] for p, m in manifest.items())
        if unchanged:
            context.log.info(f"{repo_id} already holds these {len(files)} files; nothing uploaded.")
            return {"uploaded": False, "commit": ds_client.head_revision(repo_id), "manifest": manifest}
    with tempfile.TemporaryDirectory() as tmp:
        manifest_file = Path(tmp) / "manifest.json"
        manifest_file.write_text(json.dumps(manifest, sort_keys=True, indent=1))
        commit = ds_client.upload_files(
            repo_id, {**{p: Path(local) for p, local in files.items()}, MANIFEST_PATH: manifest_file}, message
        )
    return {"uploaded": True, "commit": commit or ds_client.head_revision(repo_id), "manifest": manifest}


def ensure_repo(ds_client, namespace: str, name: str) -> str:
    """The Data Store repo ``namespace/name``, created (with its namespace) when missing; returns its id."""
    repo_id = f"{namespace}/{name}"
    ds_client.ensure_namespace(namespace)
    ds_client.create_repo(repo_id)
    return repo_id


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="training",
    code_version=TRAINING_DATASET_CODE_VERSION,
    kinds={"nemo", "huggingface"},
    owners=OWNERS,
    tags=CPU_TAGS,
    description="The training and validation splits uploaded to the "
    "NeMo Data Store and registered in the Entity Store.",
)
@backend_errors_as_failures
def training_dataset(
    context: AssetExecutionContext,
    specter_triplets: TripletSplits,
    datastore: DataStoreResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    used = run_spec(context)
    config = used.spec.data
    ns = entity_store.namespace
    es, ds = entity_store.client(), datastore.client()
    es.ensure_namespace(ns)
    repo_id = ensure_repo(ds, ns, config.dataset_name)
    files = {
        "training/training.jsonl": specter_triplets.training,
        "validation/validation.jsonl": specter_triplets.validation,
    }
    upload = upload_if_changed(context, ds, repo_id, files, f"embed-ft: data version {specter_triplets.data_version}")
    files_url = ds.files_url(repo_id)
    es.create_dataset(
        config.dataset_name,
        ns,
        files_url,
        description="SPECTER triplets formatted by embed-ft",
        project="embedding_sft",
    )
    version = stable_hash(specter_triplets.data_version, upload["manifest"])[:16]
    value = UploadedDataset(
        namespace=ns,
        name=config.dataset_name,
        repo_id=repo_id,
        files_url=files_url,
        commit=upload["commit"],
        data_version=version,
    )
    metadata = {
        "repo_id": repo_id,
        "files_url": files_url,
        "repo_url": link(datastore.url(), f"/v1/hf/api/datasets/{repo_id}/revision/main"),
        "entity_url": link(entity_store.url(), f"/v1/datasets/{ns}/{config.dataset_name}"),
        **used_spec_metadata(used, "data"),
        "commit_id": str(upload["commit"] or ""),
        "uploaded": upload["uploaded"],
        **{f"size_bytes/{p.split('/')[0]}": float(m["size"]) for p, m in upload["manifest"].items()},
        "rows/training": float(specter_triplets.rows["training"]),
        "rows/validation": float(specter_triplets.rows["validation"]),
    }
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(version))


def customization_bodies(
    config: TrainingSpec, experiment: str, namespace: str, dataset: UploadedDataset
) -> dict[str, Any]:
    """The Customizer config and job bodies (docs/NEMO_CONTRACT.md, section 5) with the spec's values."""
    target = config.target
    config_body = sft_config_body(
        "",
        namespace,
        target,
        finetuning_type=config.finetuning_type,
        training_type=config.training_type,
        max_seq_length=config.max_seq_length,
    )
    # The config name carries a hash of its body: a changed config is a new versioned config, never an edit.
    config_body["name"] = f"embed-ft-{stable_hash({**config_body, 'name': ''})[:10]}@v1"
    extra = {
        key: getattr(config, key) for key in ("max_steps", "warmup_steps", "seed") if getattr(config, key) is not None
    }
    output_model_name = config.output_model_name or f"{experiment}-embed-sft"
    job_body = sft_job_body(
        "",  # named by the caller, after the idempotency key is known
        f"{namespace}/{config_body['name']}",
        dataset.namespace,
        dataset.name,
        f"{namespace}/{output_model_name}",
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        training_type=config.training_type,
        finetuning_type=config.finetuning_type,
        extra_hyperparameters=extra,
        dataset_parameters={"num_hard_negatives": config.num_hard_negatives}
        if config.num_hard_negatives is not None
        else None,
        integrations=[{"type": "wandb", "wandb": {"project": config.wandb_project}}] if config.wandb_project else None,
        lora=lora_parameters(
            config.lora.adapter_dim,
            config.lora.alpha,
            config.lora.adapter_dropout,
            list(config.lora.target_modules) if config.lora.target_modules else None,
        ),
    )
    del job_body["name"]
    return {"config": config_body, "job": job_body, "target": target}


def describe_training(status: dict) -> str:
    parts = [f"status={job_status(status)}"]
    if status.get("percentage_done") is not None:
        parts.append(f"{float(status['percentage_done']):.0f}%")
    if status.get("steps_completed") is not None:
        parts.append(f"step {status['steps_completed']} ({status.get('steps_per_epoch') or '?'} per epoch)")
    for key in ("train_loss", "val_loss"):
        if status.get(key) is not None:
            parts.append(f"{key}={float(status[key]):.4f}")
    logs = status.get("status_logs") or []
    if logs and logs[-1].get("message"):
        parts.append(f"last log: {logs[-1]['message']}")
    return ", ".join(parts)


def loss_series(status: dict) -> dict[str, list[tuple[int, float]]]:
    metrics = ((status.get("metrics") or {}).get("metrics")) or {}
    return {
        key: [(int(p.get("step", i)), float(p["value"])) for i, p in enumerate(metrics.get(key) or []) if "value" in p]
        for key in ("train_loss", "val_loss")
    }


@asset(
    deps=[SPEC_ASSET],
    automation_condition=GPU_STAGE_CONDITION,
    group_name="training",
    code_version=FINE_TUNED_MODEL_CODE_VERSION,
    partitions_def=EXPERIMENTS,
    kinds={"nemo", "pytorch"},
    owners=OWNERS,
    tags=GPU_TAGS,
    pool="nemo_customizer",
    retry_policy=REMOTE_JOB_RETRY_POLICY,
    description="One experiment's fine-tuned model (partition = experiment): a Customizer SFT job over the uploaded "
    "dataset, with the experiment's hyperparameters; reattaches to an identical job instead of resubmitting.",
)
@backend_errors_as_failures
@not_retried_when_terminated
def fine_tuned_model(
    context: AssetExecutionContext,
    training_dataset: UploadedDataset,
    customizer: CustomizerResource,
    entity_store: EntityStoreResource,
) -> MaterializeResult:
    used = run_spec(context)
    config, remote = used.spec.training, used.spec.remote
    experiment = context.partition_key
    cz = customizer.client()
    bodies = customization_bodies(config, experiment, entity_store.namespace, training_dataset)
    # The training section's version is part of the key: a changed training field is a new job, never a reattach.
    key = stable_hash(
        training_dataset.data_version,
        bodies["config"],
        bodies["job"],
        FINE_TUNED_MODEL_CODE_VERSION,
        spec_version(used.spec, "training"),
    )
    job_body = {"name": f"{experiment}-embed-sft-{key[:12]}", **bodies["job"]}

    def submit() -> dict:
        cz.create_config(bodies["config"])
        job = cz.create_job(job_body, idempotency_key=key)
        context.log.info(f"Submitted customization job {job['id']} -> {job.get('output_model')}")
        return job

    started = time.monotonic()
    job_id, status = run_remote_job(
        context,
        what="customization job",
        key=key,
        find=lambda key: cz.find_job(key, like=job_body),  # narrowed by the body's list filters, then scanned
        submit=submit,
        fetch=lambda job_id: {**cz.get_status(job_id), "id": job_id},
        cancel=cz.cancel_job,
        timeout_s=remote.training_timeout_s,
        interval_s=remote.poll_interval_s,
        describe=describe_training,
    )
    final = job_status(status)
    if final != COMPLETED:
        raise Failure(
            f"Customization job {job_id} ended {final}: "
            f"{failure_detail(status) or 'no detail reported by the Customizer'}",
            metadata={"job_id": job_id, "status": final},
            allow_retries=False,  # a retry would train again from scratch: the job's own error is the answer
        )
    job = cz.get_job(job_id)
    output_model = job.get("output_model") or f"{job_body['output_model']}@{job_id}"
    value = FineTunedModel(
        job_id=job_id,
        output_model=output_model,
        served_name=output_model.split("@", 1)[0],
        target=bodies["target"],
        experiment=experiment,
    )
    metadata = model_metadata(context, value, status, job_body, training_dataset, customizer.url(), entity_store.url())
    metadata.update(used_spec_metadata(used, "training"))
    metadata["wait_s"] = float(time.monotonic() - started)
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(output_model))


def model_metadata(
    context,
    model: FineTunedModel,
    status: dict,
    job_body: dict,
    dataset: UploadedDataset,
    nemo_url: str,
    entity_url: str,
) -> dict[str, Any]:
    """What the model's page shows: where it lives, the hyperparameters and data it was trained with, the loss."""
    series = loss_series(status)
    val_by_step = dict(series["val_loss"])
    rows = [[step, value, val_by_step.get(step, "")] for step, value in series["train_loss"]]
    chart = loss_curve_png(series, title=f"{model.experiment}: training loss")
    ns_name = model.output_model.split("@", 1)[0]
    metadata: dict[str, Any] = {
        "experiment": model.experiment,
        "job_id": model.job_id,
        "job_url": link(nemo_url, f"/v1/customization/jobs/{model.job_id}"),
        "output_model": model.output_model,
        "model_url": link(entity_url, f"/v1/models/{ns_name}"),
        "target": model.target,
        "hyperparameters": MetadataValue.json(job_body["hyperparameters"]),
        "training_data_version": dataset.data_version,
        "training_dataset": f"{dataset.namespace}/{dataset.name}",
        "loss_chart": MetadataValue.md(markdown_image(chart, "training loss") if chart else "no loss reported"),
        "loss_curve": MetadataValue.md(
            markdown_table(["step", "train_loss", "val_loss"], rows) if rows else "no loss reported"
        ),
    }
    if status.get("elapsed_time") is not None:
        metadata["duration_s"] = float(status["elapsed_time"])
    if series["train_loss"]:
        metadata["train_loss_final"] = float(series["train_loss"][-1][1])
    if series["val_loss"]:
        metadata["val_loss_final"] = float(series["val_loss"][-1][1])
    if status.get("steps_completed") is not None:
        metadata["steps_completed"] = float(status["steps_completed"])
    return metadata
