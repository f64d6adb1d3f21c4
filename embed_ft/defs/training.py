"""Training stage: upload the triplets to the Data Store, then fine-tune with the Customizer (on the v2 profile:
a fileset and an automodel job, `training_v2.py`)."""

import time
from typing import Any

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, asset

from ..nemo.customizer import failure_detail, lora_parameters, sft_config_body, sft_job_body
from ..resources import CustomizerResource, DataStoreResource, EntityStoreResource
from ..spec.changes import spec_version
from ..spec.experiment import TrainingSpec
from .backend import GPU_STAGE_CONDITION
from .common import (
    CPU_TAGS,
    GPU_TAGS,
    OWNERS,
    backend_errors_as_failures,
    link,
    stable_hash,
)
from .experiment_spec import SPEC_ASSET, run_spec, used_spec_metadata
from .experiments import EXPERIMENTS
from .model_metadata import describe_training, model_metadata, training_progress
from .remote_jobs import REMOTE_JOB_RETRY_POLICY, not_retried_when_terminated, require_completed, run_remote_job
from .training_v2 import fine_tuned_model_v2, training_dataset_v2
from .uploads import ensure_repo, upload_if_changed
from .values import FineTunedModel, TripletSplits, UploadedDataset

TRAINING_DATASET_CODE_VERSION = "1"
FINE_TUNED_MODEL_CODE_VERSION = "3"


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
    if datastore.api_profile() == "v2":
        return training_dataset_v2(context, used, specter_triplets, datastore, entity_store.namespace)
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
    if customizer.api_profile() == "v2":
        return fine_tuned_model_v2(context, used, training_dataset, customizer, FINE_TUNED_MODEL_CODE_VERSION)
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
        progress_of=training_progress,
    )
    require_completed(
        "customization job", job_id, status, lambda doc: failure_detail(doc) or "no detail reported by the Customizer"
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
    metadata = model_metadata(
        value,
        status,
        job_body["hyperparameters"],
        training_dataset,
        link(customizer.url(), f"/v1/customization/jobs/{job_id}"),
        link(entity_store.url(), f"/v1/models/{output_model.split('@', 1)[0]}"),
        used,
        wait_s=time.monotonic() - started,
    )
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(output_model))
