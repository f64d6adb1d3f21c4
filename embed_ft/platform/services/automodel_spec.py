"""A v2 automodel job's spec -> what the training worker runs (the v1 job's hyperparameters), within its limits.

The request arrives checked for shape by the v2 contract (``AutomodelJobRequest``, Helix's field names and lower
bounds); the upper bounds are this platform's, the same as the v1 routes' (``api/customizer.Hyperparameters``): a
job the worker cannot run is a 422 naming the v2 field, never a job that fails (or runs for ever) later.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from embed_ft.nemo.v2.contract import NAME_MAX, AutomodelJobSpec

from ...profiles import LOCAL
from .errors import InvalidInputError

MAX_STEPS = 1_000_000
# (v2 field, value getter, lowest, highest): the v1 Hyperparameters' bounds under their v2 names.
LIMITS: tuple[tuple[str, str, float, float], ...] = (
    ("spec.schedule.epochs", "epochs", 1, 1000),
    ("spec.schedule.max_steps", "max_steps", 1, MAX_STEPS),
    ("spec.schedule.seed", "seed", 0, 2**32 - 1),
    ("spec.batch.global_batch_size", "batch_size", 1, 4096),
    ("spec.optimizer.learning_rate", "learning_rate", 1e-12, 1),
    ("spec.optimizer.warmup_steps", "warmup_steps", 0, MAX_STEPS),
    ("spec.optimizer.weight_decay", "weight_decay", 0, 1e6),
    ("spec.training.max_seq_length", "max_seq_length", 1, 8192),
)
LORA_LIMITS = (("rank", "adapter_dim", 1, 1024), ("alpha", "alpha", 1, 4096))
PRECISIONS = {"bf16": "bf16-mixed", "fp16": "fp16", "fp32": "fp32"}  # fp8 has no CPU/torch path here: refused


def hyperparameters(spec: AutomodelJobSpec) -> dict[str, Any]:
    """The worker's hyperparameters for ``spec`` (server defaults: the local backend profile's, as on v1)."""
    schedule, batch, optimizer, training = spec.schedule, spec.batch, spec.optimizer, spec.training
    hp: dict[str, Any] = {
        "training_type": "sft",
        "finetuning_type": training.finetuning_type,
        "epochs": schedule.epochs if schedule else 1,
        "max_steps": schedule.max_steps if schedule else None,
        "seed": schedule.seed if schedule and schedule.seed is not None else 42,
        "batch_size": batch.global_batch_size if batch else LOCAL.batch_size,
        "learning_rate": optimizer.learning_rate if optimizer else LOCAL.learning_rate,
        "warmup_steps": (optimizer.warmup_steps if optimizer else None) or 0,
        "weight_decay": (optimizer.weight_decay if optimizer else None) or 0.0,
        "max_seq_length": training.max_seq_length,
    }
    for field, key, low, high in LIMITS:
        _check(field, hp.get(key), low, high)
    if training.lora is not None and training.finetuning_type != "all_weights":
        lora = training.lora
        hp["lora"] = {"adapter_dim": lora.rank or 8, "alpha": lora.alpha or 16}
        for name, key, low, high in LORA_LIMITS:
            _check(f"spec.training.lora.{name}", hp["lora"][key], low, high)
        if lora.dropout is not None:
            hp["lora"]["adapter_dropout"] = lora.dropout
        if lora.target_modules:
            hp["lora"]["target_modules"] = lora.target_modules
    if training.precision == "fp8":
        raise InvalidInputError(
            "spec.training.precision", "spec.training.precision fp8: this platform trains in bf16, fp16 or fp32"
        )
    return {k: v for k, v in hp.items() if v is not None}


def precision(spec: AutomodelJobSpec) -> str | None:
    return PRECISIONS.get(spec.training.precision or "")


def _check(field: str, value: Any, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidInputError(field, f"{field} is {value}; this platform accepts {low:g} to {high:g}")


def output_name(spec: AutomodelJobSpec, training_fileset: str, job_name: str) -> str:
    """``spec.output.name``, or Helix's generated ``{model}-{fileset}-{suffix}`` (the suffix from the job name, so
    that the name is stable for the job) cut to a valid v2 name."""
    if spec.output is not None:
        return spec.output.name
    model = re.sub(r"[^a-z0-9]+", "-", spec.model.split("/")[-1].split("@")[0].lower()).strip("-")
    suffix = hashlib.sha256(job_name.encode()).hexdigest()[:6]
    stem = f"{model}-{training_fileset}"[: NAME_MAX - len(suffix) - 1].rstrip("-")
    name = re.sub(r"-{2,}", "-", f"{stem}-{suffix}")
    return name if name[0].isalpha() else f"m{name}"[:NAME_MAX]
