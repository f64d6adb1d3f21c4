"""The training stage on the v2 profile (NeMo Platform): the splits uploaded as a fileset of the Files service, and
fine-tuning as an automodel job of the customization service, through the v2 clients (`embed_ft/nemo/v2/`).

The job is submitted once per idempotency key (input data version + request + code version + training spec
version): v2 addresses jobs by name, so the key *is* the name (`nemo/v2/jobs.py`); a retry or a second
materialization reattaches to it, a terminated run cancels it, a poll times out, a failed job fails the asset with
its own text (`remote_jobs.run_remote_job`). Asset names, values and metadata keys are the v1 ones (`training.py`).
"""

from __future__ import annotations

import time
from typing import Any

from dagster import DataVersion, MaterializeResult

from ..nemo.v2.contract import (
    FILES,
    MODELS,
    AutomodelBatch,
    AutomodelDataset,
    AutomodelJobRequest,
    AutomodelJobSpec,
    AutomodelLoRA,
    AutomodelOptimizer,
    AutomodelOutput,
    AutomodelSchedule,
    AutomodelTraining,
    workspace_path,
)
from ..nemo.v2.files import FilesClient, fileset_ref
from ..nemo.v2.jobs import automodel_jobs, failure_text
from ..resources import CustomizerResource, DataStoreResource
from ..spec.changes import spec_version
from ..spec.experiment import TrainingSpec
from .common import link, stable_hash
from .evaluation_v2 import fileset_url
from .experiment_spec import StoredSpec, used_spec_metadata
from .model_metadata import describe_training, model_metadata, training_progress
from .remote_jobs import require_completed, run_remote_job
from .uploads import FilesetRepo, upload_if_changed
from .values import FineTunedModel, TripletSplits, UploadedDataset

TRAINING_FOLDER, VALIDATION_FOLDER = "training", "validation"  # the v1 repo's layout, kept in the fileset
OUTPUT_NAME_CHARS = 48  # + "-" + 10 key characters: within the v2 name's 63


def training_dataset_v2(
    context, used: StoredSpec, splits: TripletSplits, datastore: DataStoreResource, workspace: str
) -> MaterializeResult:
    """`training_dataset` on v2: the splits in the fileset ``workspace/<data.dataset_name>`` (unchanged content is
    not uploaded again: the same manifest of hashes as v1)."""
    name = used.spec.data.dataset_name
    files = FilesClient(datastore.http())
    files.ensure_workspace(workspace)
    files.ensure_fileset(workspace, name, description="SPECTER triplets formatted by embed-ft", purpose="dataset")
    repo_id = fileset_ref(workspace, name)
    local = {
        f"{TRAINING_FOLDER}/training.jsonl": splits.training,
        f"{VALIDATION_FOLDER}/validation.jsonl": splits.validation,
    }
    upload = upload_if_changed(context, FilesetRepo(files), repo_id, local, "")
    version = stable_hash(splits.data_version, upload["manifest"])[:16]
    value = UploadedDataset(
        namespace=workspace,
        name=name,
        repo_id=repo_id,
        files_url=fileset_url(workspace, name),
        commit=None,
        data_version=version,
    )
    files_link = link(datastore.url(), files.files_path(workspace, name))
    metadata = {
        "repo_id": repo_id,
        "files_url": value.files_url,
        "repo_url": files_link,
        "entity_url": link(datastore.url(), workspace_path(FILES, workspace, "filesets", name)),
        **used_spec_metadata(used, "data"),
        "commit_id": "",
        "uploaded": upload["uploaded"],
        **{f"size_bytes/{p.split('/')[0]}": float(m["size"]) for p, m in upload["manifest"].items()},
        "rows/training": float(splits.rows["training"]),
        "rows/validation": float(splits.rows["validation"]),
    }
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(version))


def automodel_request(config: TrainingSpec, dataset: UploadedDataset, output_name: str) -> AutomodelJobRequest:
    """The automodel job of the spec's training section over the uploaded fileset (its ``#training/`` and
    ``#validation/`` folders). The name is a placeholder: the job collection names it from the idempotency key."""
    lora = None
    if config.finetuning_type != "all_weights":
        lora = AutomodelLoRA(
            rank=config.lora.adapter_dim,
            alpha=config.lora.alpha,
            dropout=config.lora.adapter_dropout,
            target_modules=list(config.lora.target_modules) if config.lora.target_modules else None,
        )
    fileset = fileset_ref(dataset.namespace, dataset.name)
    spec = AutomodelJobSpec(
        model=config.target,
        dataset=AutomodelDataset(
            training=f"{fileset}#{TRAINING_FOLDER}/", validation=f"{fileset}#{VALIDATION_FOLDER}/"
        ),
        training=AutomodelTraining(
            training_type=config.training_type,
            finetuning_type=config.finetuning_type,
            max_seq_length=config.max_seq_length,
            lora=lora,
        ),
        schedule=AutomodelSchedule(epochs=config.epochs, max_steps=config.max_steps, seed=config.seed),
        batch=AutomodelBatch(global_batch_size=config.batch_size),
        optimizer=AutomodelOptimizer(learning_rate=config.learning_rate, warmup_steps=config.warmup_steps),
        output=AutomodelOutput(name=output_name),
    )
    return AutomodelJobRequest(name="embed-ft-sft", description="embed-ft embedding fine-tuning", spec=spec)


def v1_shaped_status(doc: dict[str, Any]) -> dict[str, Any]:
    """A v2 job's status read into the v1 status's keys (`model_metadata`, `describe_training`): the details of
    the job and of its training step's tasks merged; ``step`` is ``steps_completed``; a bare
    ``{"train_loss": [...]}`` metrics object is nested as v1 nests it."""
    merged: dict[str, Any] = dict(doc.get("status_details") or {})
    for step in doc.get("steps") or []:
        for task in (step.get("tasks") or []) if isinstance(step, dict) else []:
            merged.update((task.get("status_details") or {}) if isinstance(task, dict) else {})
    shaped = {**merged, "status": doc.get("status")}
    if shaped.get("steps_completed") is None and isinstance(merged.get("step"), (int, float)):
        shaped["steps_completed"] = merged["step"]
    metrics = merged.get("metrics")
    if isinstance(metrics, dict) and "metrics" not in metrics:
        shaped["metrics"] = {"metrics": metrics}
    return shaped


def fine_tuned_model_v2(
    context, used: StoredSpec, dataset: UploadedDataset, customizer: CustomizerResource, code_version: str
) -> MaterializeResult:
    """`fine_tuned_model` on v2: reattach to or submit the automodel job for this key, wait, read its model."""
    config, remote = used.spec.training, used.spec.remote
    experiment = context.partition_key
    workspace = dataset.namespace
    jobs = automodel_jobs(customizer.http(), workspace)
    # The key leaves the output name out (it is derived from the key); the training section's version is in it.
    unnamed = automodel_request(config, dataset, "embed-ft-sft")
    key = stable_hash(
        dataset.data_version, unnamed.spec.model_dump(mode="json"), code_version, spec_version(used.spec, "training")
    )
    base = (config.output_model_name or f"{experiment}-embed-sft")[:OUTPUT_NAME_CHARS].rstrip("-")
    output_name = f"{base}-{key[:10]}"
    request = automodel_request(config, dataset, output_name)

    def submit() -> dict:
        job = jobs.create(request, key)
        context.log.info(f"Submitted automodel job {job['id']} -> {workspace}/{output_name}")
        return job

    started = time.monotonic()
    name, doc = run_remote_job(
        context,
        what="automodel job",
        key=key,
        find=jobs.find,
        submit=submit,
        fetch=jobs.get,
        cancel=jobs.cancel,
        timeout_s=remote.training_timeout_s,
        interval_s=remote.poll_interval_s,
        describe=lambda d: describe_training(v1_shaped_status(d)),
        progress_of=lambda name, d: training_progress(name, v1_shaped_status(d)),
    )
    require_completed("automodel job", name, doc, failure_text)
    output_model = fileset_ref(workspace, output_name)
    value = FineTunedModel(
        job_id=name, output_model=output_model, served_name=output_model, target=config.target, experiment=experiment
    )
    sections = request.spec.model_dump(mode="json", exclude_none=True)
    hyperparameters: dict[str, Any] = {
        k: sections[k] for k in ("training", "schedule", "batch", "optimizer") if k in sections
    }
    metadata = model_metadata(
        value,
        v1_shaped_status(doc),
        hyperparameters,
        dataset,
        link(customizer.url(), f"{jobs.path}/{name}/status"),
        link(customizer.url(), workspace_path(MODELS, workspace, "models", output_name)),
        used,
        wait_s=time.monotonic() - started,
    )
    return MaterializeResult(value=value, metadata=metadata, data_version=DataVersion(output_model))
