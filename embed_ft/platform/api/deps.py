"""What routes depend on: the platform context and its services (``Annotated`` aliases), and list pagination."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from ..context import PlatformContext
from ..services.customization import CustomizationService
from ..services.datastore_namespaces import DatastoreNamespaces
from ..services.deployments import DeploymentService
from ..services.entities import EntitiesService
from ..services.errors import InvalidInputError
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


# ---- pagination


@dataclass(frozen=True)
class ListQuery:
    """A NeMo list request: ``filter[field]=value`` (dotted fields allowed), ``sort=[-]field``, ``page``, ``page_size``."""

    filters: dict[str, str]
    sort: str
    page: int
    page_size: int


def list_query(request: Request) -> ListQuery:
    params = request.query_params
    filters = {key[len("filter["):-1]: value for key, value in params.multi_items()
               if key.startswith("filter[") and key.endswith("]")}
    try:
        page = int(params.get("page") or 1)
        page_size = int(params.get("page_size") or DEFAULT_PAGE_SIZE)
    except ValueError as exc:
        raise InvalidInputError("page", f"page and page_size must be integers: {exc}") from None
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInputError("page", f"page must be >= 1 and page_size within 1..{MAX_PAGE_SIZE}")
    return ListQuery(filters, params.get("sort") or "-created_at", page, page_size)


Listing = Annotated[ListQuery, Depends(list_query)]


def _field(doc: dict, dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _matches(doc: dict, filters: dict[str, str]) -> bool:
    for field, wanted in filters.items():
        value = _field(doc, field)
        if isinstance(value, bool):
            value = str(value).lower()
        if value is None or str(value) != wanted:
            return False
    return True


def _sort_key(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def paginate(query: ListQuery, docs: list[dict]) -> dict[str, Any]:
    """The NeMo list answer ``{"data": [...], "pagination": {...}}`` of ``docs`` filtered, sorted and paged."""
    docs = [d for d in docs if _matches(d, query.filters)]
    field, descending = query.sort.lstrip("-"), query.sort.startswith("-")
    present = [d for d in docs if _field(d, field) is not None]
    present.sort(key=lambda d: _sort_key(_field(d, field)), reverse=descending)
    docs = present + [d for d in docs if _field(d, field) is None]  # documents without the field go last
    page, page_size = query.page, query.page_size
    chunk = docs[(page - 1) * page_size: page * page_size]
    return {
        "object": "list",
        "data": chunk,
        "pagination": {
            "page": page,
            "page_size": page_size,
            "current_page_size": len(chunk),
            "total_pages": max(1, math.ceil(len(docs) / page_size)),
            "total_results": len(docs),
        },
        "sort": query.sort,
        "filter": query.filters,
    }
