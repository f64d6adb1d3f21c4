"""Data Store routes: the Hugging Face Hub protocol under ``/v1/hf`` (as ``huggingface_hub.HfApi`` speaks it), and
the form-encoded Data Store namespaces under ``/v1/datastore/namespaces``. The bodies we parse here (a namespace form,
a repo create/delete) are the v1 contract's (``nemo/v1/contract.py``); the rest is ``huggingface_hub``'s protocol.

Errors of the ``/v1/hf`` routes carry ``X-Error-Code``/``X-Error-Message`` (see ``api/errors.py``). Repos live on
disk (``services/repo_store.py``); commit bodies are streamed line by line into staging files.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ...nemo.v1.contract import DatastoreNamespaceForm, RepoRequest
from ..paths import validate_name, validate_repo_path
from ..services.errors import MalformedRequestError, NotFoundError, PayloadTooLargeError
from ..services.repo_commit import CommitUpload
from ..services.repo_store import DEFAULT_BRANCH, REPO_TYPES, RepoStore
from ..store import AlreadyExists
from ..strict_json import loads
from .deps import Namespaces, Repos, Settings
from .errors import validation_message

router = APIRouter()

# A namespace form is tiny; larger bodies are refused before parsing.
MAX_NAMESPACE_FORM_BYTES = 64 * 1024
# Commit body bytes handed to the parser at once (it runs in a worker thread).
FEED_BYTES = 1024 * 1024


def _repo_url(request: Request, repo_type: str, namespace: str, name: str) -> str:
    """The repo's URL on the Hub endpoint as the client sees it (URLs we return must sit on it)."""
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{str(request.base_url).rstrip('/')}/v1/hf/{prefix}{namespace}/{name}"


def _repo_type_from_plural(plural: str) -> str:
    if plural not in REPO_TYPES:
        raise NotFoundError(f"repo type {plural!r} is not served here; use one of {sorted(REPO_TYPES)}")
    return REPO_TYPES[plural]


def _too_large(limit: int, setting: str = "max_upload_bytes") -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes ({setting})")


async def read_body_limited(request: Request, limit: int, setting: str = "max_json_body_bytes") -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes without reading it all. (The body
    guard of api/body.py has already refused bodies over ``max_json_body_bytes``.)"""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, setting)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit, setting)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's body()/form()/json() reuse a cached body instead of the spent stream
    return body


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body_limited(request, limit)
    try:
        data = loads(body or b"{}", "body")  # strict: the guard refused NaN and lone surrogates already
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedRequestError(f"request body must be a JSON object, got {type(data).__name__}")
    return data


# ---- repos: create / delete / info


def _repo_id_from_payload(data: dict) -> tuple[str, str, str]:
    try:
        request = RepoRequest.model_validate(data)
    except ValidationError as exc:
        raise MalformedRequestError(f"repo request: {validation_message(exc)}") from None
    name, organization = request.name, request.organization
    repo_type = request.type or "model"
    if repo_type not in REPO_TYPES.values():
        raise MalformedRequestError(f"repo type {repo_type!r} is not supported; use 'dataset' or 'model'")
    if organization is None and isinstance(name, str) and "/" in name:
        organization, name = name.split("/", 1)
    if organization is None:
        raise MalformedRequestError(f"repo id must be '<namespace>/<name>'; got name {name!r} without an organization")
    validate_name(organization, "namespace (organization)")
    validate_name(name, "repo name")
    return str(repo_type), str(organization), str(name)


@router.post("/v1/hf/api/repos/create")
async def create_repo(request: Request, namespaces: Namespaces, settings: Settings):
    data = await read_json_object(request, settings.max_json_body_bytes)
    repo_type, namespace, name = _repo_id_from_payload(data)
    url = _repo_url(request, repo_type, namespace, name)
    try:
        await run_in_threadpool(namespaces.create_repo, repo_type, namespace, name)
    except AlreadyExists:
        # huggingface_hub with exist_ok=True reads "url" from the 409 answer too.
        message = f"You already created this {repo_type} repo: {namespace}/{name}"
        return JSONResponse(
            {"error": message, "detail": message, "url": url}, status_code=409, headers={"X-Error-Message": message}
        )
    return {"url": url, "name": f"{namespace}/{name}", "id": f"{namespace}/{name}", "type": repo_type}


@router.delete("/v1/hf/api/repos/delete")
async def delete_repo(request: Request, repos: Repos, settings: Settings):
    repo_type, namespace, name = _repo_id_from_payload(await read_json_object(request, settings.max_json_body_bytes))
    await run_in_threadpool(repos.delete, repo_type, namespace, name)
    return {}


@router.get("/v1/hf/api/{plural}/{namespace}/{name}")
def repo_info(plural: str, namespace: str, name: str, repos: Repos):
    return repos.info(_repo_type_from_plural(plural), namespace, name, DEFAULT_BRANCH)


@router.get("/v1/hf/api/{plural}/{namespace}/{name}/revision/{revision:path}")
def repo_info_at_revision(plural: str, namespace: str, name: str, revision: str, repos: Repos):
    return repos.info(_repo_type_from_plural(plural), namespace, name, revision)


@router.post("/v1/hf/api/validate-yaml")
async def validate_yaml(request: Request, settings: Settings):
    await read_json_object(request, settings.max_json_body_bytes)  # README.md uploads ask this first; any card is fine
    return {"warnings": []}


# ---- uploads: preupload + NDJSON commit


@router.post("/v1/hf/api/{plural}/{namespace}/{name}/preupload/{revision:path}")
async def preupload(
    plural: str, namespace: str, name: str, revision: str, request: Request, repos: Repos, settings: Settings
):
    repo_type = _repo_type_from_plural(plural)
    data = await read_json_object(request, settings.max_json_body_bytes)
    repos.open_revision(repo_type, namespace, name, revision)
    files = data.get("files")
    if not isinstance(files, list):
        raise MalformedRequestError("preupload body needs a 'files' list")
    paths = [
        validate_repo_path(entry.get("path") if isinstance(entry, dict) else None, f"files[{index}].path")
        for index, entry in enumerate(files)
    ]
    return repos.preupload(repo_type, namespace, name, revision, paths)


@router.post("/v1/hf/api/{plural}/{namespace}/{name}/commit/{revision:path}")
async def commit(
    plural: str, namespace: str, name: str, revision: str, request: Request, repos: Repos, settings: Settings
):
    """The NDJSON commit: streamed to disk (``services/repo_commit.py``), memory bounded whatever the file sizes."""
    repo_type = _repo_type_from_plural(plural)
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    upload = await run_in_threadpool(CommitUpload, repos, repo_type, namespace, name, revision)
    try:
        pending, pending_size, total = [], 0, 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            pending.append(chunk)
            pending_size += len(chunk)
            # One thread hop per ~1 MiB of a long line, not per socket read; a line that ends is staged at once.
            if pending_size >= FEED_BYTES or b"\n" in chunk:
                await run_in_threadpool(upload.feed, b"".join(pending))
                pending, pending_size = [], 0
        await run_in_threadpool(upload.feed, b"".join(pending))
        record = await run_in_threadpool(upload.finish)
    finally:
        await run_in_threadpool(upload.discard)
    commit_url = f"{_repo_url(request, repo_type, namespace, name)}/commit/{record['id']}"
    return {"commitUrl": commit_url, "commitOid": record["id"], "commitMessage": upload.summary, "success": True}


# ---- listing and downloads


def _list_tree(request: Request, repos: RepoStore, plural: str, namespace: str, name: str, revision: str, path: str):
    recursive = request.query_params.get("recursive", "false").lower() in ("1", "true", "yes")
    return repos.tree(_repo_type_from_plural(plural), namespace, name, revision, path.strip("/"), recursive)


@router.get("/v1/hf/api/{plural}/{namespace}/{name}/tree/{revision}")
def list_tree(plural: str, namespace: str, name: str, revision: str, request: Request, repos: Repos):
    return _list_tree(request, repos, plural, namespace, name, revision, "")


@router.get("/v1/hf/api/{plural}/{namespace}/{name}/tree/{revision}/{path:path}")
def list_tree_under(plural: str, namespace: str, name: str, revision: str, path: str, request: Request, repos: Repos):
    return _list_tree(request, repos, plural, namespace, name, revision, path)


def _file_response(
    repos: RepoStore, repo_type: str, namespace: str, name: str, revision: str, path: str
) -> FileResponse:
    target, oid, commit_id = repos.file(repo_type, namespace, name, revision, path)
    headers = {"ETag": f'"{oid}"', "X-Repo-Commit": commit_id, "Accept-Ranges": "bytes"}
    return FileResponse(target, headers=headers, media_type="application/octet-stream")


@router.api_route("/v1/hf/datasets/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
def resolve_dataset_file(namespace: str, name: str, revision: str, path: str, repos: Repos):
    return _file_response(repos, "dataset", namespace, name, revision, path)


@router.api_route("/v1/hf/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
def resolve_model_file(namespace: str, name: str, revision: str, path: str, repos: Repos):
    return _file_response(repos, "model", namespace, name, revision, path)


# ---- Data Store namespaces (form-encoded, as the tutorial posts them)


@router.post("/v1/datastore/namespaces", status_code=201)
async def create_datastore_namespace(request: Request, namespaces: Namespaces, settings: Settings):
    await read_body_limited(request, MAX_NAMESPACE_FORM_BYTES, "MAX_NAMESPACE_FORM_BYTES")
    if request.headers.get("content-type", "").startswith("application/json"):
        namespace = (await read_json_object(request, settings.max_json_body_bytes)).get("namespace")
    else:
        namespace = (await request.form()).get("namespace")
    try:
        form = DatastoreNamespaceForm.model_validate({"namespace": namespace})
    except ValidationError:
        raise MalformedRequestError(
            "form field 'namespace' is required (body namespace=<name>, form-encoded)"
        ) from None
    return namespaces.create(form.namespace)


@router.get("/v1/datastore/namespaces")
def list_datastore_namespaces(namespaces: Namespaces):
    return {"namespaces": namespaces.list()}


@router.get("/v1/datastore/namespaces/{namespace}")
def get_datastore_namespace(namespace: str, namespaces: Namespaces):
    return namespaces.get(namespace)


@router.delete("/v1/datastore/namespaces/{namespace}")
def delete_datastore_namespace(namespace: str, namespaces: Namespaces):
    namespaces.delete(namespace)
    return Response(status_code=204)
