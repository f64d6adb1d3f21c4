"""What routes depend on: the platform context and its services (``Annotated`` aliases), list pagination, and
answers shown through the wire contract's response models."""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Iterable

from fastapi import Depends, Request
from pydantic import BaseModel

from embed_ft.nemo.v1.contract import Pagination

from ..context import PlatformContext
from ..services.customization import CustomizationService
from ..services.datastore_namespaces import DatastoreNamespaces
from ..services.deployments import DeploymentService
from ..services.entities import EntitiesService
from ..services.errors import InvalidInputError, MalformedRequestError
from ..services.evaluation.resources import EvaluatorResources
from ..services.evaluation.service import EvaluationService
from ..services.repo_store import RepoStore
from ..services.serving import ServingRegistry
from ..settings import PlatformSettings
from ..store import EntityStore

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000


def get_context(request: Request) -> PlatformContext:
    """The context the app's lifespan built (``app.state.ctx``)."""
    return request.app.state.ctx


Context = Annotated[PlatformContext, Depends(get_context)]


def _settings(ctx: Context) -> PlatformSettings:
    return ctx.settings


def _store(ctx: Context) -> EntityStore:
    return ctx.store


def _repos(ctx: Context) -> RepoStore:
    return ctx.repos


def _datastore_namespaces(ctx: Context) -> DatastoreNamespaces:
    return ctx.datastore_namespaces


def _entities(ctx: Context) -> EntitiesService:
    return ctx.entities


def _serving(ctx: Context) -> ServingRegistry:
    return ctx.serving


def _deployments(ctx: Context) -> DeploymentService:
    return ctx.deployments


def _customization(ctx: Context) -> CustomizationService:
    return ctx.customization


def _evaluator(ctx: Context) -> EvaluationService:
    return ctx.evaluator


def _evaluator_resources(ctx: Context) -> EvaluatorResources:
    return ctx.evaluator_resources


Settings = Annotated[PlatformSettings, Depends(_settings)]
Store = Annotated[EntityStore, Depends(_store)]
Repos = Annotated[RepoStore, Depends(_repos)]
Namespaces = Annotated[DatastoreNamespaces, Depends(_datastore_namespaces)]
Entities = Annotated[EntitiesService, Depends(_entities)]
Serving = Annotated[ServingRegistry, Depends(_serving)]
Deployments = Annotated[DeploymentService, Depends(_deployments)]
Customization = Annotated[CustomizationService, Depends(_customization)]
Evaluator = Annotated[EvaluationService, Depends(_evaluator)]
EvaluatorDocs = Annotated[EvaluatorResources, Depends(_evaluator_resources)]


# ---- lists: filter, search, sort, pagination (the SDK's wire format)
#
# ``filter[field]=v`` and ``search[field]=v`` nest with brackets (``filter[custom_fields][k]=v``,
# ``filter[peft][finetuning_type]=lora``); a dotted field in one bracket (``filter[custom_fields.k]``) is read the
# same way. In the nested form each bracket is one key (``filter[custom_fields][a.b]`` finds the key ``a.b``; a
# document without it is searched at ``a`` then ``b``). A ``filter[``/``search[`` parameter that is not of this
# form, or nests deeper than ``MAX_FILTER_DEPTH``, is answered 400 naming it (never ignored: that would answer the
# whole list).
# A filter matches exactly (``true``/``false`` on an object field: whether it is set); a search matches substrings,
# case-insensitively, and a comma-joined or repeated search value matches any of its terms. Fields combine with AND.
# A trailing ``[gte|gt|lte|lt|start|end]`` compares (dates as dates): ``filter[created_at][gte]=2025-01-01``.

_BRACKETS = re.compile(r"^(filter|search)((?:\[[^\[\]]+\])+)$")
_LIST_PARAM = re.compile(r"^(filter|search)\[")
MAX_FILTER_DEPTH = 8
RANGE_OPS = {
    "gte": operator.ge,
    "start": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "end": operator.le,
    "lt": operator.lt,
}
# A list route's own field names that live elsewhere in its documents: a dotted path, or a function of the document.
Aliases = dict[str, "str | Callable[[dict], Any]"]


@dataclass(frozen=True)
class Condition:
    """One ``filter[...]``/``search[...]`` parameter: the field path, its values (any of them), the comparison."""

    path: tuple[str, ...]
    values: tuple[str, ...]
    op: str  # "eq" (filter), "contains" (search), or a key of RANGE_OPS


@dataclass(frozen=True)
class ListQuery:
    """A NeMo list request: filters, searches, ``sort=[-]field``, ``page`` (from 1) and ``page_size``."""

    filters: tuple[Condition, ...]
    searches: tuple[Condition, ...]
    sort: str
    page: int
    page_size: int
    echo: dict[str, dict]  # "filter" / "search": the parameters as nested objects, for the answer


def _nest(target: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[path[-1]] = value


def _show_param(key: str) -> str:
    return repr(key) if len(key) <= 80 else repr(key[:60]) + f"... ({len(key)} characters)"


def _filter_path(key: str) -> tuple[str, tuple[str, ...]] | None:
    """(``filter``/``search``, the field path) of a list parameter; None for other parameters;
    ``MalformedRequestError`` naming the parameter for a malformed or too deep one."""
    if not _LIST_PARAM.match(key):
        return None
    match = _BRACKETS.match(key)
    if match is None:
        raise MalformedRequestError(
            f"query parameter {_show_param(key)} is malformed: use {key.split('[', 1)[0]}[field][subfield]=value "
            "(non-empty brackets, no '[' or ']' inside a bracket)"
        )
    segments = re.findall(r"\[([^\[\]]+)\]", match.group(2))
    if len(segments) > MAX_FILTER_DEPTH:
        raise MalformedRequestError(
            f"query parameter {_show_param(key)} nests {len(segments)} brackets deep; "
            f"the limit is {MAX_FILTER_DEPTH} (MAX_FILTER_DEPTH)"
        )
    parts = tuple(p for p in segments[0].split(".") if p) if len(segments) == 1 else tuple(segments)
    if not parts or len(parts) > MAX_FILTER_DEPTH:
        raise MalformedRequestError(
            f"query parameter {_show_param(key)} names no field or more than "
            f"{MAX_FILTER_DEPTH} (MAX_FILTER_DEPTH) levels of fields"
        )
    return match.group(1), parts


def list_query(request: Request) -> ListQuery:
    params = request.query_params
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for key, value in params.multi_items():
        found = _filter_path(key)
        if found:
            grouped.setdefault(found, []).append(value)
    filters: list[Condition] = []
    searches: list[Condition] = []
    echo: dict[str, dict] = {"filter": {}, "search": {}}
    for (kind, parts), values in grouped.items():
        op = parts[-1] if len(parts) > 1 and parts[-1] in RANGE_OPS else ("eq" if kind == "filter" else "contains")
        path = parts[:-1] if op in RANGE_OPS else parts
        if kind == "search" and op == "contains":
            values = [term for value in values for term in value.split(",") if term]
        (filters if kind == "filter" else searches).append(Condition(path, tuple(values), op))
        _nest(echo[kind], parts, values[0] if len(values) == 1 else list(values))
    try:
        page = int(params.get("page") or 1)
        page_size = int(params.get("page_size") or DEFAULT_PAGE_SIZE)
    except ValueError as exc:
        raise InvalidInputError("page", f"page and page_size must be integers: {exc}") from None
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInputError("page", f"page must be >= 1 and page_size within 1..{MAX_PAGE_SIZE}")
    return ListQuery(tuple(filters), tuple(searches), params.get("sort") or "-created_at", page, page_size, echo)


Listing = Annotated[ListQuery, Depends(list_query)]


def _values(doc: Any, path: tuple[str, ...]) -> list[Any]:
    """The values at ``path`` in ``doc``; a list on the way fans out (``training_options.finetuning_type``). A part
    with a dot is first a key of its own (``custom_fields`` key ``a.b``), else the path ``a`` then ``b``."""
    current = [doc]
    for part in path:
        nxt: list[Any] = []
        for value in current:
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, dict):
                    continue
                if item.get(part) is not None:
                    nxt.append(item[part])
                elif "." in part and part not in item:
                    nxt += _values(item, tuple(p for p in part.split(".") if p))
        current = nxt
    return [v for value in current for v in (value if isinstance(value, list) else [value])]


def _field_values(doc: dict, path: tuple[str, ...], aliases: Aliases) -> list[Any]:
    """The values of a list field in ``doc``: through ``aliases`` (the whole dotted field, or its first part for a
    path alias), else the field's own path."""
    alias, rest = aliases.get(".".join(path)), tuple[str, ...]()
    if alias is None and isinstance(aliases.get(path[0]), str):
        alias, rest = aliases[path[0]], path[1:]
    if callable(alias):
        value = alias(doc)
        return [] if value is None else list(value) if isinstance(value, list) else [value]
    if isinstance(alias, str):
        path = tuple(alias.split(".")) + rest
    return _values(doc, path)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _comparable(value: Any) -> tuple:
    """Numbers as numbers, ISO dates as aware datetimes, anything else as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    text = str(value)
    try:
        return (0, float(text), "")
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        return (1, moment.timestamp(), "")
    except ValueError:
        return (2, 0.0, text)


def _holds(condition: Condition, found: list[Any]) -> bool:
    if condition.op == "eq":
        wanted = set(condition.values)
        if wanted <= {"true", "false"} and not any(isinstance(v, bool) for v in found):
            exists = any(isinstance(v, (dict, list)) for v in found)
            if exists or not found:  # ?filter[peft]=true: whether the (object) field is set
                return str(exists).lower() in wanted
        return any(_text(v) in wanted for v in found)
    if condition.op == "contains":
        texts = [_text(v).lower() for v in found]
        return any(term.lower() in text for term in condition.values for text in texts)
    compare = RANGE_OPS[condition.op]
    for bound in condition.values:
        limit = _comparable(bound)
        if not any(compare(_comparable(v), limit) for v in found if _comparable(v)[0] == limit[0]):
            return False
    return True


def _sort_key(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def paginate(query: ListQuery, docs: list[dict], aliases: Aliases | None = None) -> dict[str, Any]:
    """The NeMo list answer ``{"object", "data", "pagination", "sort", "filter", "search"}`` of ``docs`` filtered,
    searched, sorted and paged. ``aliases`` map a filter field of the route to where its documents keep it."""
    aliases = aliases or {}
    conditions = query.filters + query.searches
    docs = [d for d in docs if all(_holds(c, _field_values(d, c.path, aliases)) for c in conditions)]
    sort_path = tuple(query.sort.lstrip("-").split("."))
    descending = query.sort.startswith("-")
    keyed = [(_field_values(d, sort_path, aliases), d) for d in docs]
    present = [(found[0], d) for found, d in keyed if found]
    present.sort(key=lambda pair: _sort_key(pair[0]), reverse=descending)
    docs = [d for _, d in present] + [d for found, d in keyed if not found]  # documents without the field go last
    page, page_size = query.page, query.page_size
    chunk = docs[(page - 1) * page_size : page * page_size]  # a page past the end is empty, not an error
    return {
        "object": "list",
        "data": chunk,
        "pagination": Pagination(
            page=page,
            page_size=page_size,
            current_page_size=len(chunk),
            total_pages=max(1, math.ceil(len(docs) / page_size)),
            total_results=len(docs),
        ).model_dump(),
        "sort": query.sort,
        "filter": query.echo["filter"],
        "search": query.echo["search"],
    }


# ---- answers in the contract's shape (the v2 routes: a service's document -> Helix's response model)


def answer(model: type[BaseModel], doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as the response model ``model`` shows it: checked, JSON-typed, every field kept."""
    return model.model_validate(doc).model_dump(mode="json")


def answer_page(query: ListQuery, model: type[BaseModel], docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The list answer of ``docs``, each shown as ``model``, then filtered, sorted and paged (:func:`paginate`)."""
    return paginate(query, [answer(model, doc) for doc in docs])
