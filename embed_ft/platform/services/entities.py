"""Entity Store: namespaces, dataset registrations and models.

Documents live in the ``EntityStore`` under kinds ``namespace`` (id ``ns``), ``dataset`` and ``model`` (id
``ns/name``; model names may carry ``@version`` / ``@cust-...``). Names are checked with ``validate_name``; an
unsafe one raises ``InvalidPathError`` (answered 400). Other services register models with ``register_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

from ..paths import InvalidPathError, ensure_within, validate_name
from ..settings import PlatformSettings
from ..store import AlreadyExists, EntityStore, new_id
from .errors import ConflictError, MalformedRequestError, NotFoundError

NAMESPACE_KIND = "namespace"
DATASET_KIND = "dataset"
MODEL_KIND = "model"


def ensure_namespace(store: EntityStore, namespace: str, description: str = "") -> dict[str, Any]:
    """The namespace document, created when missing (idempotent)."""
    validate_name(namespace, "namespace")
    existing = store.get(NAMESPACE_KIND, namespace)
    if existing is not None:
        return existing
    try:
        return store.create(NAMESPACE_KIND, namespace, {"id": namespace, "description": description})
    except AlreadyExists:
        return store.get(NAMESPACE_KIND, namespace)  # type: ignore[return-value]


def register_model(
    store: EntityStore, namespace: str, name: str, base_model: str | None, artifact_path: Path | str, **extra: Any
) -> dict[str, Any]:
    """Register (or replace) the Entity Store model ``namespace/name`` whose weights are the folder ``artifact_path``.

    Creates the namespace if needed. Re-registering keeps the original ``id`` and ``created_at``.
    ``extra`` fields (``description``, ``peft``, ``spec``, ``custom_fields``, ...) are stored as given.
    """
    validate_name(namespace, "namespace")
    validate_name(name, "model name")
    ensure_namespace(store, namespace)
    artifact_path = Path(artifact_path).resolve()
    model_id = f"{namespace}/{name}"
    existing = store.get(MODEL_KIND, model_id) or {}
    doc: dict[str, Any] = {
        "id": existing.get("id") or new_id("model"),
        "namespace": namespace,
        "name": name,
        "base_model": base_model,
        "description": "",
        "peft": {"finetuning_type": "all_weights"},
        "custom_fields": {},
        **extra,
        "artifact": {
            "files_url": artifact_path.as_uri(),
            "status": "upload_completed",
            "backend_engine": "hugging_face",
        },  # HF-format weights (a BackendEngineType)
        "artifact_path": str(artifact_path),
    }
    if existing.get("created_at"):
        doc["created_at"] = existing["created_at"]
    return store.put(MODEL_KIND, model_id, doc)


HF_DATASETS = "hf://datasets/"
# Fields of a model document that name its weights (what deployments load): checked at create.
MODEL_LOCATION_FIELDS = (
    ("artifact_path",),
    ("local_path",),
    ("files_url",),
    ("artifact", "files_url"),
    ("artifact", "path"),
)


def check_dataset_files_url(files_url: object) -> None:
    """A dataset's files live in this platform's Data Store: ``hf://datasets/<namespace>/<name>`` or nothing."""
    if files_url is None:
        return
    rest = (
        files_url[len(HF_DATASETS) :].strip("/")
        if isinstance(files_url, str) and files_url.startswith(HF_DATASETS)
        else None
    )
    parts = rest.split("/") if rest else []
    try:
        if len(parts) != 2:
            raise InvalidPathError(
                "it must be 'hf://datasets/<namespace>/<name>' (a repo of this platform's Data Store)"
            )
        validate_name(parts[0], "its namespace")
        validate_name(parts[1], "its name")
    except InvalidPathError as exc:
        raise MalformedRequestError(f"files_url {str(files_url)[:200]!r} is refused: {exc}") from None


class EntitiesService:
    """Create, read, list and delete the Entity Store's namespaces, datasets and models."""

    def __init__(
        self,
        store: EntityStore,
        settings: PlatformSettings | None = None,
        model_users: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        # ``ns/name`` of a model -> what uses it (the deployments serving it): such a model is not deleted.
        self.model_users = model_users

    def _check_model_locations(self, body: dict[str, Any]) -> None:
        """A model created over the API may only point into this platform's stores (its models folder or Data
        Store): a deployment loads weights from there, so ``file:///etc`` or another home's model is a 400."""
        roots = [self.settings.models_dir, self.settings.repos_dir] if self.settings else []
        for path in MODEL_LOCATION_FIELDS:
            value: Any = body
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is None:
                continue
            field = ".".join(path)
            location = _local_location(value)
            if location is None and isinstance(value, str) and value.startswith("hf://"):
                continue  # a Data Store repo: nothing is loaded from the local disk by this name
            try:
                if location is None:
                    raise InvalidPathError("it is neither a file:// URL, an absolute path nor an hf:// repo")
                if not any(_inside(root, location) for root in roots):
                    raise InvalidPathError(
                        "it is outside this platform's stores "
                        f"({', '.join(str(r) for r in roots) or 'none configured'})"
                    )
            except InvalidPathError as exc:
                raise MalformedRequestError(f"{field} {str(value)[:200]!r} is refused: {exc}") from None

    # ---- namespaces

    def create_namespace(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = validate_name(body["id"], "namespace id")
        try:
            return self.store.create(NAMESPACE_KIND, namespace, body)
        except AlreadyExists:
            raise ConflictError(f"namespace {namespace!r} already exists") from None

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        validate_name(namespace, "namespace")
        doc = self.store.get(NAMESPACE_KIND, namespace)
        if doc is None:
            raise NotFoundError(f"namespace {namespace!r} does not exist; create it with POST /v1/namespaces")
        return doc

    def delete_namespace(self, namespace: str) -> None:
        """Delete an empty namespace; 409 while it holds datasets or models (they would stay readable)."""
        with self.store.atomic():  # no dataset or model is created in it between the check and the delete
            self.get_namespace(namespace)
            held = [
                f"{kind} {doc['namespace']}/{doc['name']}"
                for kind in (DATASET_KIND, MODEL_KIND)
                for doc in self.store.list(kind, namespace=namespace)
            ]
            if held:
                shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
                raise ConflictError(
                    f"namespace {namespace!r} still holds {len(held)} "
                    f"entit{'y' if len(held) == 1 else 'ies'} ({shown}); delete them first"
                )
            self.store.delete(NAMESPACE_KIND, namespace)

    # ---- datasets and models (documents keyed ns/name in an existing namespace)

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a dataset or model document from a request body (``namespace``, ``name`` and its fields)."""
        validate_name(body["name"], f"{kind} name")
        if kind == DATASET_KIND:
            check_dataset_files_url(body.get("files_url"))
        elif kind == MODEL_KIND:
            self._check_model_locations(body)
        key = f"{body['namespace']}/{body['name']}"
        with self.store.atomic():  # the namespace exists when the document is written (a racing delete waits)
            self.get_namespace(body["namespace"])
            try:
                return self.store.create(kind, key, {"id": new_id(kind), **body})
            except AlreadyExists:
                raise ConflictError(f"{kind} {key} already exists") from None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        validate_name(namespace, "namespace")
        validate_name(name, f"{kind} name")
        doc = self.store.get(kind, f"{namespace}/{name}")
        if doc is None:
            raise NotFoundError(f"{kind} {namespace}/{name} does not exist")
        return doc

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a dataset or model; 409 for a model a deployment serves (its weights would go at the next
        start-up's clean-up, and the deployment with them)."""
        self.get(kind, namespace, name)
        key = f"{namespace}/{name}"
        users = self.model_users(key) if kind == MODEL_KIND and self.model_users else []
        if users:
            raise ConflictError(
                f"model {key} is served by deployment(s) {', '.join(users[:5])}; delete "
                "them first (DELETE /v1/deployment/model-deployments/<namespace>/<name>)"
            )
        self.store.delete(kind, key)


def _local_location(value: object) -> Path | None:
    """The local path a ``file://`` URL or an absolute path names; None for anything else."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return None
    if value.startswith("file:"):
        parsed = urlparse(value)
        return Path(unquote(parsed.path)) if parsed.netloc in ("", "localhost") else None
    return Path(value) if value.startswith("/") else None


def _inside(root: Path, location: Path) -> bool:
    try:
        ensure_within(root, location)
        return True
    except (InvalidPathError, OSError, ValueError):
        return False
