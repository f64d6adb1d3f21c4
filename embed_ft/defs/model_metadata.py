"""What a fine-tuned model's page shows, the same on both API generations: where the job and the model live, the
hyperparameters and data it was trained with, the loss curve; and the progress of a training job (its log line and
its typed `RemoteProgress`)."""

from __future__ import annotations

from typing import Any, Optional

from dagster import MetadataValue

from ..nemo.status import job_status
from .charts import loss_curve_png, markdown_image
from .common import markdown_table
from .experiment_spec import StoredSpec, used_spec_metadata
from .progress import RemoteProgress
from .values import FineTunedModel, UploadedDataset


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


def training_progress(job_id: str, status: dict) -> RemoteProgress:
    """The typed progress of a training job from its status (v1 shape: `training_v2.v1_shaped_status` on v2)."""
    logs = status.get("status_logs") or []
    return RemoteProgress(
        "training",
        job_id,
        job_status(status),
        percent=_number(status.get("percentage_done")),
        step=_whole(status.get("steps_completed")),
        total_steps=_whole(status.get("max_steps")),
        steps_per_epoch=_whole(status.get("steps_per_epoch")) or None,  # 0 or absent: not known yet
        loss=_number(status.get("train_loss")),
        message=str(logs[-1].get("message") or "") if logs and isinstance(logs[-1], dict) else "",
    )


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _whole(value: Any) -> Optional[int]:
    number = _number(value)
    return int(number) if number is not None else None


def loss_series(status: dict) -> dict[str, list[tuple[int, float]]]:
    metrics = ((status.get("metrics") or {}).get("metrics")) or {}
    return {
        key: [(int(p.get("step", i)), float(p["value"])) for i, p in enumerate(metrics.get(key) or []) if "value" in p]
        for key in ("train_loss", "val_loss")
    }


def model_metadata(
    model: FineTunedModel,
    status: dict,
    hyperparameters: dict[str, Any],
    dataset: UploadedDataset,
    job_url: Any,
    model_url: Any,
    used: StoredSpec,
    wait_s: float,
) -> dict[str, Any]:
    """The model asset's metadata. ``status`` is the job's status in the v1 shape (``metrics.metrics.train_loss``,
    ``elapsed_time``, ``steps_completed``): the v2 job's is read into it first (`training_v2.v1_shaped_status`).
    ``used`` is the spec the run used, ``wait_s`` how long the asset waited on the job."""
    series = loss_series(status)
    val_by_step = dict(series["val_loss"])
    rows = [[step, value, val_by_step.get(step, "")] for step, value in series["train_loss"]]
    chart = loss_curve_png(series, title=f"{model.experiment}: training loss")
    metadata: dict[str, Any] = {
        "experiment": model.experiment,
        "job_id": model.job_id,
        "job_url": job_url,
        "output_model": model.output_model,
        "model_url": model_url,
        "target": model.target,
        "hyperparameters": MetadataValue.json(hyperparameters),
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
    metadata.update(used_spec_metadata(used, "training"))
    metadata["wait_s"] = float(wait_s)
    return metadata
