"""`embed-ft run`'s spec options, generated from `ExperimentSpec`'s fields: one option per field, its help the
field's description, with its defaults (per backend profile, and where a preset changes it) and its unit.

Names: the field's name (``--learning-rate``); a name that several sections share belongs to one section (``--seed``
is the split's, ``--batch-size`` and ``--max-seq-length`` training's) and the others carry their section
(``--training-seed``); every mining field starts with ``mining-``; LoRA fields start with ``lora-``; a ``_s``
suffix is dropped (the unit says seconds); a list field is repeatable under its singular name (``--task``,
``--metric``); a yes/no field is a flag pair (``--heldout/--no-heldout``). An optional field takes ``none`` to
clear it. `markdown_table()` is the README's option list (a test keeps the two equal).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .profiles import PROFILES
from .spec.changes import flat
from .spec.experiment import ExperimentSpec, default_spec
from .spec.presets import PRESETS

PREFIXED_SECTIONS = {"mining"}  # --mining-model, --mining-range-min: mining's fields read as the mining's
OWNER_OF_SHARED_NAME = {"seed": "split", "batch_size": "training", "max_seq_length": "training"}
PLURALS = {"tasks": "task", "metrics": "metric", "target_modules": "target-module"}
FLAG_NAMES = {"include_heldout": "heldout"}
NOT_OPTIONS = {"profile", "preset"}  # the backend decides the profile; --preset is its own option
NONE = "none"


class Cleared:
    """What ``--field none`` gives: the field set to empty (None), told apart from an option left out."""

    def __repr__(self) -> str:
        return NONE


CLEARED = Cleared()


@dataclass(frozen=True)
class SpecOption:
    field: str  # dotted: training.learning_rate
    name: str  # the option without dashes: learning-rate
    info: FieldInfo
    kind: str  # value | flag | list

    @property
    def param(self) -> str:
        return "spec__" + self.field.replace(".", "__")


class Nullable(click.ParamType):
    """A value of ``inner``, or ``none`` (the field left empty)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = f"{getattr(inner, 'name', 'value')}|none"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, str) and value.lower() == NONE:
            return CLEARED
        return self.inner.convert(value, param, ctx) if isinstance(self.inner, click.ParamType) else self.inner(value)


def _leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    leaves = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            leaves += _leaves(info.annotation, f"{prefix}{name}.")
        elif f"{prefix}{name}" not in NOT_OPTIONS:
            leaves.append((f"{prefix}{name}", info))
    return leaves


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type without Optional, whether None is allowed)."""
    args = typing.get_args(annotation)
    if (
        typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union))
        and type(None) in args
    ):
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def spec_options() -> list[SpecOption]:
    leaves = _leaves(ExperimentSpec)
    counts: dict[str, int] = {}
    for dotted, _ in leaves:
        counts[dotted.split(".")[-1]] = counts.get(dotted.split(".")[-1], 0) + 1
    options = []
    for dotted, info in leaves:
        parts = dotted.split(".")
        leaf = parts[-1]
        base, _ = _base_type(info.annotation)
        kind = "list" if typing.get_origin(base) is tuple else "flag" if base is bool else "value"
        name = FLAG_NAMES.get(leaf) or PLURALS.get(leaf, leaf) if kind != "value" else leaf
        name = name.removesuffix("_s")
        if len(parts) == 3:
            name = f"{parts[1]}-{name}"
        elif parts[0] in PREFIXED_SECTIONS or (counts[leaf] > 1 and OWNER_OF_SHARED_NAME.get(leaf) != parts[0]):
            name = f"{parts[0]}-{name}"
        options.append(SpecOption(dotted, name.replace("_", "-"), info, kind))
    return options


def _click_type(option: SpecOption) -> Any:
    base, nullable = _base_type(option.info.annotation)
    if option.kind == "list":
        base = typing.get_args(base)[0]
    if typing.get_origin(base) is Literal:
        kind: Any = click.Choice([str(v) for v in typing.get_args(base)])
    elif base is bool:
        kind = click.Choice(["true", "false"])
    else:
        kind = {int: click.INT, float: click.FLOAT}.get(base, click.STRING)
    return Nullable(kind) if nullable and option.kind == "value" else kind


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return NONE if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def default_text(option: SpecOption) -> str:
    """The field's default per profile (one value when they agree) and the presets that change it."""
    by_value: dict[str, list[str]] = {}  # each value once, with the profiles that have it
    for name, profile in PROFILES.items():
        by_value.setdefault(_fmt(flat(default_spec(profile))[option.field]), []).append(name)
    if len(by_value) == 1:
        text = next(iter(by_value))
    else:
        text = ", ".join(f"{value} ({', '.join(names)})" for value, names in by_value.items())
    presets = [f"{name}: {_fmt(p.changes[option.field])}" for name, p in PRESETS.items() if option.field in p.changes]
    return text + (f"; {', '.join(presets)}" if presets else "")


def unit_of(option: SpecOption) -> str:
    extra = option.info.json_schema_extra
    return str(extra.get("unit", "")) if isinstance(extra, dict) else ""


def help_text(option: SpecOption) -> str:
    unit = unit_of(option)
    extra = f" [unit: {unit}]" if unit else ""
    repeat = " Repeatable." if option.kind == "list" else ""
    return f"{option.info.description}{repeat} [{option.field}; default: {default_text(option)}]{extra}"


def add_spec_options(command: Callable) -> Callable:
    """Decorate a click command with one option per spec field (parameters named ``spec__section__field``)."""
    for option in reversed(spec_options()):
        if option.kind == "flag":
            decl = click.option(
                f"--{option.name}/--no-{option.name}", option.param, default=None, help=help_text(option)
            )
        else:
            decl = click.option(
                f"--{option.name}",
                option.param,
                type=_click_type(option),
                default=None,
                multiple=option.kind == "list",
                help=help_text(option),
            )
        command = decl(command)
    return command


def changes_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """The spec changes the given options make: ``{dotted field: value}`` (options left out are no change)."""
    changes = {}
    for option in spec_options():
        value = params.pop(option.param, None)
        if value is None or value == ():
            continue
        if value is CLEARED:
            value = None
        elif option.kind == "list":
            value = list(value)
        elif isinstance(value, str) and _base_type(option.info.annotation)[0] is bool:
            value = value == "true"
        changes[option.field] = value
    return changes


def markdown_table() -> str:
    """The README's list of the spec options."""
    rows = ["| option | field | default (per profile; presets) | unit |", "|---|---|---|---|"]
    for option in spec_options():
        flag = f"--{option.name}/--no-{option.name}" if option.kind == "flag" else f"--{option.name}"
        rows.append(f"| `{flag}` | `{option.field}` | {default_text(option).replace('|', '/')} | {unit_of(option)} |")
    return "\n".join(rows)
