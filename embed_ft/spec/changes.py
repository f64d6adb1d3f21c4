"""Specs as flat ``section.field`` values: apply changes, list differences, hash a version.

A change names a field by its dotted path (``training.learning_rate``, ``training.lora.alpha``) and gives its new
value; `apply_changes` validates the whole result once and raises `SpecError` naming the field. This is the one
place run settings are validated (the CLI, the `experiment_spec` asset's run config and the stored spec all go
through it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from .experiment import ExperimentSpec

VERSION_EXCLUDES = {"preset"}  # where a spec started from is provenance, not a setting


class SpecError(ValueError):
    """A spec or a change that is not valid; the message names the field (``training.batch_size: ...``)."""


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"] if not isinstance(part, int))
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{prefix}{path}: {message}" if path else f"{prefix.rstrip('.')}: {message}")
    return lines


def flat(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"training.learning_rate": 0.0001, ...}``: every leaf field, JSON values (tuples as lists)."""
    values: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            values.update(flat(value, f"{prefix}{name}."))
        else:
            values[f"{prefix}{name}"] = json.loads(json.dumps(value))
    return values


def leaf_fields() -> list[str]:
    """Every settable dotted field name of a spec."""
    return [name for name in _leaf_names(ExperimentSpec, "")]


def _leaf_names(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _leaf_names(annotation, f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    return names


def apply_changes(spec: ExperimentSpec, changes: Mapping[str, Any]) -> ExperimentSpec:
    """``spec`` with each dotted field of ``changes`` set, validated as a whole; SpecError naming the field."""
    known = set(leaf_fields())
    unknown = sorted(set(changes) - known)
    if unknown:
        raise SpecError(
            "; ".join(f"{name}: no such field (known: section.field, see embed-ft run --help)" for name in unknown)
        )
    document = spec.model_dump(mode="json")
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = document
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_spec(document)


def parse_spec(document: Any) -> ExperimentSpec:
    """A stored or given spec document as an `ExperimentSpec`; SpecError naming each bad field."""
    try:
        return ExperimentSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError("; ".join(error_lines(exc))) from None


def differences(spec: ExperimentSpec, other: ExperimentSpec) -> dict[str, Any]:
    """The fields of ``spec`` whose value differs from ``other``'s: ``{dotted: value in spec}``."""
    mine, theirs = flat(spec), flat(other)
    return {name: value for name, value in mine.items() if name not in VERSION_EXCLUDES and theirs.get(name) != value}


def spec_version(spec: ExperimentSpec, section: str | None = None) -> str:
    """A short, stable hash of the spec's settings (or of one section): equal settings, equal version."""
    document = spec.model_dump(mode="json", exclude=VERSION_EXCLUDES)
    if section is not None:
        document = document[section]
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
