"""A v2 automodel job's spec -> what the training worker runs (the v1 job's hyperparameters), within its limits.

The request arrives checked for shape by the v2 contract (``AutomodelJobRequest``, Helix's field names and lower
bounds); the worker's limits and defaults are written once, in the v1 contract (``nemo/v1/customization``'s
``Hyperparameters``, what the v1 routes validate with): the hyperparameters a v2 spec becomes are built with that
model, so a job the worker cannot run is a 422 naming the v2 field, never a job that fails (or runs for ever) later.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import ValidationError

from embed_ft.nemo.v1.customization import Hyperparameters
from embed_ft.nemo.v2.contract import NAME_MAX, AutomodelJobSpec

from .errors import InvalidInputError

# Each v1 hyperparameter and the v2 field it is read from (a refusal names the field the caller sent), in the
# order a refusal is reported.
V2_FIELDS: dict[tuple[str, ...], str] = {
    ("epochs",): "spec.schedule.epochs",
    ("max_steps",): "spec.schedule.max_steps",
    ("seed",): "spec.schedule.seed",
    ("batch_size",): "spec.batch.global_batch_size",
    ("learning_rate",): "spec.optimizer.learning_rate",
    ("warmup_steps",): "spec.optimizer.warmup_steps",
    ("weight_decay",): "spec.optimizer.weight_decay",
    ("max_seq_length",): "spec.training.max_seq_length",
    ("lora", "adapter_dim"): "spec.training.lora.rank",
    ("lora", "alpha"): "spec.training.lora.alpha",
    ("lora", "adapter_dropout"): "spec.training.lora.dropout",
    ("lora", "target_modules"): "spec.training.lora.target_modules",
}
ORDER = {field: i for i, field in enumerate(V2_FIELDS.values())}
PRECISIONS = {"bf16": "bf16-mixed", "fp16": "fp16", "fp32": "fp32"}  # fp8 has no CPU/torch path here: refused


def hyperparameters(spec: AutomodelJobSpec) -> dict[str, Any]:
    """The worker's hyperparameters for ``spec``, as a v1 job with the same values stores them: the v1
    ``Hyperparameters`` of what the spec sets (their defaults, the local backend profile's, fill the rest; a
    ``lora`` block of a LoRA job gets the v1 adapter defaults)."""
    training = spec.training
    adapter = training.lora is not None and training.finetuning_type != "all_weights"
    given: dict[str, Any] = {"finetuning_type": training.finetuning_type, **({"lora": {}} if adapter else {})}
    for v1_path, v2_field in V2_FIELDS.items():
        value = _at(spec, v2_field)
        if value is None or value == [] or (v1_path[0] == "lora" and not adapter):
            continue
        node = given
        for part in v1_path[:-1]:
            node = node[part]
        node[v1_path[-1]] = value
    checked = _checked(given)
    if training.precision == "fp8":
        raise InvalidInputError(
            "spec.training.precision", "spec.training.precision fp8: this platform trains in bf16, fp16 or fp32"
        )
    return checked.model_dump(exclude_none=True)


def precision(spec: AutomodelJobSpec) -> str | None:
    return PRECISIONS.get(spec.training.precision or "")


def _at(spec: AutomodelJobSpec, v2_field: str) -> Any:
    """The value at ``spec.a.b`` in ``spec``; None where a section on the way is not set."""
    value: Any = spec
    for part in v2_field.split(".")[1:]:
        value = getattr(value, part) if value is not None else None
    return value


def _checked(given: dict[str, Any]) -> Hyperparameters:
    """The v1 ``Hyperparameters`` of ``given``; ``InvalidInputError`` naming the v2 field of the first value they
    refuse (beyond a bound, not finite)."""
    try:
        return Hyperparameters.model_validate(given)
    except ValidationError as exc:
        refused = [(_v2_field(error["loc"]), error) for error in exc.errors()]
        field, error = min(refused, key=lambda pair: ORDER.get(pair[0], len(ORDER)))  # in the spec's order
        raise InvalidInputError(field, f"{field} is {error.get('input')!r}: {error['msg']}") from None


def _v2_field(loc: tuple[int | str, ...]) -> str:
    parts = tuple(str(part) for part in loc)
    return V2_FIELDS.get(parts[:2]) or V2_FIELDS.get(parts[:1]) or "spec"


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
