"""Data Store: the Hugging Face Hub protocol under ``/v1/hf`` (as ``huggingface_hub.HfApi`` speaks it), and the
form-encoded Data Store namespaces under ``/v1/datastore/namespaces``.

On-disk layout of one repo (``<home>/datastore/<type>s/<namespace>/<name>/``)::

    repo.json               {"type", "namespace", "name", "created_at", "updated_at", "head", "commits": [...]}
    commits/<commit>.json   the manifest of that commit: {path: {"oid", "size"}}
    snapshots/<commit>/...  the files of that commit (unchanged files are hard links to the previous snapshot)
    staging/                uploads of commits in progress

A commit stages its files, builds the new snapshot beside the old ones and then atomically replaces
``repo.json``; that rename is the commit point, so a crash leaves either the old or the new commit, never a mix.
Every commit has a sha1 id; the old snapshots stay readable under their commit id as a revision.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..paths import InvalidPathError, ensure_within, safe_join, validate_name, validate_repo_path
from ..settings import PlatformSettings
from ..store import AlreadyExists, atomic_write_text, utc_now

router = APIRouter()

# URL plural -> repo type. Only these two are served (datasets carry the pipeline's data).
REPO_TYPES = {"datasets": "dataset", "models": "model"}
DEFAULT_BRANCH = "main"
DATASTORE_NAMESPACE_KIND = "datastore_namespace"

_repo_locks: dict[str, threading.Lock] = {}
_repo_locks_guard = threading.Lock()


# --------------------------------------------------------------------------------------------------------------
# Errors in the shape huggingface_hub understands: X-Error-Code picks the exception class
# (RepoNotFound, RevisionNotFound, EntryNotFound), X-Error-Message carries the message.
# --------------------------------------------------------------------------------------------------------------


class RepoNotFoundError(LookupError):
    """The repo does not exist (in-process callers get this instead of an HTTP error)."""


def _header_safe(message: str) -> str:
    return message.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")[:500]


def hub_error(status: int, message: str, code: str | None = None) -> HTTPException:
    headers = {"X-Error-Message": _header_safe(message)}
    if code:
        headers["X-Error-Code"] = code
    return HTTPException(status_code=status, detail=message, headers=headers)


def _bad_request(exc: Exception) -> HTTPException:
    return hub_error(400, str(exc))


# --------------------------------------------------------------------------------------------------------------
# The on-disk repo model (also used in-process by the customizer/evaluator through the public helpers below).
# --------------------------------------------------------------------------------------------------------------


def git_blob_oid(data: bytes) -> str:
    """Git's blob id (sha1 of ``blob <size>\\0<data>``): what huggingface_hub compares for regular files."""
    h = hashlib.sha1(b"blob %d\x00" % len(data))
    h.update(data)
    return h.hexdigest()


def _plural(repo_type: str) -> str:
    if repo_type not in REPO_TYPES.values():
        raise InvalidPathError(f"repo type {repo_type!r} is not supported; use one of {sorted(REPO_TYPES.values())}")
    return f"{repo_type}s"


def repo_dir(settings: PlatformSettings, repo_type: str, namespace: str, name: str) -> Path:
    """The folder of one repo (it may not exist). Validates the names and checks containment."""
    validate_name(namespace, "namespace")
    validate_name(name, "repo name")
    root = settings.repos_dir
    return ensure_within(root, root / _plural(repo_type) / namespace / name)


def _repo_lock(path: Path) -> threading.Lock:
    with _repo_locks_guard:
        return _repo_locks.setdefault(str(path), threading.Lock())


def _load_meta(rdir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((rdir / "repo.json").read_text("utf-8"))
    except FileNotFoundError:
        return None


def _load_manifest(rdir: Path, commit: str) -> dict[str, dict[str, Any]]:
    return json.loads((rdir / "commits" / f"{commit}.json").read_text("utf-8"))


def _require_repo(settings: PlatformSettings, repo_type: str, namespace: str, name: str) -> tuple[Path, dict]:
    rdir = repo_dir(settings, repo_type, namespace, name)
    meta = _load_meta(rdir)
    if meta is None:
        raise RepoNotFoundError(f"{repo_type} repo {namespace}/{name} does not exist")
    return rdir, meta


def _resolve_revision(meta: dict, revision: str) -> str | None:
    """Branch ``main`` is the head; any earlier commit id is a revision too. None when unknown."""
    if revision == DEFAULT_BRANCH:
        return meta["head"]
    if any(c["id"] == revision for c in meta["commits"]):
        return revision
    return None


def repo_files_dir(
    settings: PlatformSettings, repo_type: str, namespace: str, name: str, revision: str = DEFAULT_BRANCH
) -> Path:
    """The folder holding the files of ``namespace/name`` at ``revision`` (read it, never write into it)."""
    rdir, meta = _require_repo(settings, repo_type, namespace, name)
    commit = _resolve_revision(meta, revision)
    if commit is None:
        raise RepoNotFoundError(f"{repo_type} repo {namespace}/{name} has no revision {revision!r}")
    return rdir / "snapshots" / commit


def list_repo_paths(
    settings: PlatformSettings, repo_type: str, namespace: str, name: str, revision: str = DEFAULT_BRANCH
) -> list[str]:
    """Every file path in the repo at ``revision``, sorted."""
    rdir, meta = _require_repo(settings, repo_type, namespace, name)
    commit = _resolve_revision(meta, revision)
    if commit is None:
        raise RepoNotFoundError(f"{repo_type} repo {namespace}/{name} has no revision {revision!r}")
    return sorted(_load_manifest(rdir, commit))


def read_repo_file(
    settings: PlatformSettings,
    namespace: str,
    name: str,
    path: str,
    repo_type: str = "dataset",
    revision: str = DEFAULT_BRANCH,
) -> bytes:
    """The bytes of one file of a repo (``hf://datasets/<namespace>/<name>/<path>``), read in-process."""
    files_dir = repo_files_dir(settings, repo_type, namespace, name, revision)
    target = safe_join(files_dir, path)
    if not target.is_file():
        raise FileNotFoundError(f"{repo_type} repo {namespace}/{name} has no file {path!r} at {revision!r}")
    return target.read_bytes()


def _new_commit_id(parent: str | None, summary: str, manifest: dict, created_at: str) -> str:
    h = hashlib.sha1()
    for part in (parent or "", created_at, summary, json.dumps(manifest, sort_keys=True), uuid.uuid4().hex):
        h.update(part.encode("utf-8") + b"\n")
    return h.hexdigest()


def _write_commit(
    rdir: Path,
    meta: dict,
    summary: str,
    description: str,
    added: dict[str, tuple[Path, str, int]],
    deleted_files: list[str],
    deleted_folders: list[str],
) -> dict:
    """Build the new snapshot and switch the head to it (caller holds the repo lock). Returns the commit record.

    ``added`` maps repo path -> (staged file, oid, size); staged files are moved into the snapshot.
    """
    parent = meta["head"]
    manifest = dict(_load_manifest(rdir, parent)) if parent else {}
    for path in deleted_files:
        if path not in manifest:
            raise hub_error(404, f"cannot delete {path!r}: A file with this name doesn't exist", "EntryNotFound")
        del manifest[path]
    for folder in deleted_folders:
        prefix = folder.rstrip("/") + "/"
        doomed = [p for p in manifest if p.startswith(prefix)]
        if not doomed:
            raise hub_error(404, f"cannot delete folder {folder!r}: it has no files", "EntryNotFound")
        for p in doomed:
            del manifest[p]
    for path, (_, oid, size) in added.items():
        manifest[path] = {"oid": oid, "size": size}
    _check_no_file_folder_clash(manifest)

    created_at = utc_now()
    commit_id = _new_commit_id(parent, summary, manifest, created_at)
    snapshots = rdir / "snapshots"
    building = snapshots / f".{commit_id}.building"
    building.mkdir(parents=True)
    try:
        old_snapshot = snapshots / parent if parent else None
        for path in manifest:
            dest = safe_join(building, path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path in added:
                os.replace(added[path][0], dest)
            else:
                source = old_snapshot / path  # type: ignore[operator]
                try:
                    os.link(source, dest)  # snapshots share unchanged files; files are never modified in place
                except OSError:
                    shutil.copy2(source, dest)
        os.rename(building, snapshots / commit_id)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    atomic_write_text(rdir / "commits" / f"{commit_id}.json", json.dumps(manifest, sort_keys=True))
    record = {"id": commit_id, "parent": parent, "title": summary, "message": description, "date": created_at}
    new_meta = {**meta, "head": commit_id, "updated_at": created_at, "commits": [*meta["commits"], record]}
    atomic_write_text(rdir / "repo.json", json.dumps(new_meta, indent=1))  # the commit point
    meta.clear()
    meta.update(new_meta)
    return record


def _check_no_file_folder_clash(manifest: dict) -> None:
    paths = set(manifest)
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) != "." and str(parent) in paths:
                raise hub_error(409, f"{path!r} needs folder {str(parent)!r}, but a file has that path")


def create_repo_on_disk(settings: PlatformSettings, repo_type: str, namespace: str, name: str) -> dict:
    """Create an empty repo with its initial commit; raises ``AlreadyExists``."""
    rdir = repo_dir(settings, repo_type, namespace, name)
    with _repo_lock(rdir):
        if _load_meta(rdir) is not None:
            raise AlreadyExists(f"{repo_type} repo {namespace}/{name} already exists")
        now = utc_now()
        meta = {"type": repo_type, "namespace": namespace, "name": name, "created_at": now, "updated_at": now,
                "head": None, "commits": []}
        (rdir / "commits").mkdir(parents=True, exist_ok=True)
        _write_commit(rdir, meta, "initial commit", "", {}, [], [])
        return meta


def delete_repo_on_disk(settings: PlatformSettings, repo_type: str, namespace: str, name: str) -> None:
    """Remove a repo: rename it away first (atomic), then delete the files."""
    rdir, _ = _require_repo(settings, repo_type, namespace, name)
    with _repo_lock(rdir):
        trash = settings.repos_dir / ".trash" / uuid.uuid4().hex
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(rdir, trash)
        shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------------------------------------------


def _settings(request: Request) -> PlatformSettings:
    return request.app.state.ctx.settings


def _endpoint(request: Request) -> str:
    """The Hub endpoint as the client sees it (URLs we return must sit on it)."""
    return str(request.base_url).rstrip("/") + "/v1/hf"


def _repo_url(request: Request, repo_type: str, namespace: str, name: str) -> str:
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{_endpoint(request)}/{prefix}{namespace}/{name}"


def _repo_type_from_plural(plural: str) -> str:
    if plural not in REPO_TYPES:
        raise hub_error(404, f"repo type {plural!r} is not served here; use one of {sorted(REPO_TYPES)}")
    return REPO_TYPES[plural]


def _open_repo(request: Request, repo_type: str, namespace: str, name: str) -> tuple[Path, dict]:
    try:
        return _require_repo(_settings(request), repo_type, namespace, name)
    except InvalidPathError as exc:
        raise _bad_request(exc) from exc
    except RepoNotFoundError as exc:
        raise hub_error(404, str(exc), "RepoNotFound") from exc


def _open_revision(request: Request, repo_type: str, namespace: str, name: str, revision: str):
    rdir, meta = _open_repo(request, repo_type, namespace, name)
    commit = _resolve_revision(meta, revision)
    if commit is None:
        raise hub_error(404, f"{repo_type} repo {namespace}/{name} has no revision {revision!r}", "RevisionNotFound")
    return rdir, meta, commit


def _too_large(limit: int) -> HTTPException:
    return hub_error(413, f"request body is larger than the limit of {limit} bytes (max_upload_bytes)")


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's body()/form()/json() reuse a cached body instead of the spent stream
    return body


async def read_json_object(request: Request) -> dict[str, Any]:
    body = await read_body_limited(request, _settings(request).max_upload_bytes)
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise hub_error(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise hub_error(400, f"request body must be a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------------------------
# Repos: create / delete / info
# --------------------------------------------------------------------------------------------------------------


def _repo_id_from_payload(data: dict) -> tuple[str, str, str]:
    name, organization = data.get("name"), data.get("organization")
    repo_type = data.get("type") or "model"
    if repo_type not in REPO_TYPES.values():
        raise hub_error(400, f"repo type {repo_type!r} is not supported; use 'dataset' or 'model'")
    if organization is None and isinstance(name, str) and "/" in name:
        organization, name = name.split("/", 1)
    if organization is None:
        raise hub_error(400, f"repo id must be '<namespace>/<name>'; got name {name!r} without an organization")
    try:
        validate_name(organization, "namespace (organization)")
        validate_name(name, "repo name")
    except InvalidPathError as exc:
        raise _bad_request(exc) from exc
    return repo_type, organization, name


@router.post("/v1/hf/api/repos/create")
async def create_repo(request: Request):
    repo_type, namespace, name = _repo_id_from_payload(await read_json_object(request))
    url = _repo_url(request, repo_type, namespace, name)
    try:
        await run_in_threadpool(create_repo_on_disk, _settings(request), repo_type, namespace, name)
    except AlreadyExists:
        # huggingface_hub with exist_ok=True reads "url" from the 409 answer too.
        message = f"You already created this {repo_type} repo: {namespace}/{name}"
        return JSONResponse({"error": message, "detail": message, "url": url}, status_code=409,
                            headers={"X-Error-Message": message})
    return {"url": url, "name": f"{namespace}/{name}", "id": f"{namespace}/{name}", "type": repo_type}


@router.delete("/v1/hf/api/repos/delete")
async def delete_repo(request: Request):
    repo_type, namespace, name = _repo_id_from_payload(await read_json_object(request))
    try:
        await run_in_threadpool(delete_repo_on_disk, _settings(request), repo_type, namespace, name)
    except RepoNotFoundError as exc:
        raise hub_error(404, str(exc), "RepoNotFound") from exc
    return {}


def _hub_date(iso: str) -> str:
    """``2025-01-02T03:04:05.123456Z``: the only date shape huggingface_hub parses."""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _repo_info(request: Request, repo_type: str, namespace: str, name: str, revision: str) -> dict:
    rdir, meta, commit = _open_revision(request, repo_type, namespace, name, revision)
    manifest = _load_manifest(rdir, commit)
    commit_record = next(c for c in meta["commits"] if c["id"] == commit)
    info = {
        "_id": f"{namespace}/{name}",
        "id": f"{namespace}/{name}",
        "author": namespace,
        "sha": commit,
        "createdAt": _hub_date(meta["created_at"]),
        "lastModified": _hub_date(commit_record["date"]),
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": [{"rfilename": p, "size": m["size"], "blobId": m["oid"]} for p, m in sorted(manifest.items())],
        "usedStorage": sum(m["size"] for m in manifest.values()),
    }
    if repo_type == "model":
        info["modelId"] = info["id"]
    return info


@router.get("/v1/hf/api/{plural}/{namespace}/{name}")
def repo_info(plural: str, namespace: str, name: str, request: Request):
    return _repo_info(request, _repo_type_from_plural(plural), namespace, name, DEFAULT_BRANCH)


@router.get("/v1/hf/api/{plural}/{namespace}/{name}/revision/{revision:path}")
def repo_info_at_revision(plural: str, namespace: str, name: str, revision: str, request: Request):
    return _repo_info(request, _repo_type_from_plural(plural), namespace, name, revision)


@router.post("/v1/hf/api/validate-yaml")
async def validate_yaml(request: Request):
    await read_json_object(request)  # README.md uploads ask this first; we accept any card metadata
    return {"warnings": []}


# --------------------------------------------------------------------------------------------------------------
# Uploads: preupload + NDJSON commit
# --------------------------------------------------------------------------------------------------------------


@router.post("/v1/hf/api/{plural}/{namespace}/{name}/preupload/{revision:path}")
async def preupload(plural: str, namespace: str, name: str, revision: str, request: Request):
    repo_type = _repo_type_from_plural(plural)
    data = await read_json_object(request)
    rdir, meta, commit = _open_revision(request, repo_type, namespace, name, revision)
    files = data.get("files")
    if not isinstance(files, list):
        raise hub_error(400, "preupload body needs a 'files' list")
    manifest = _load_manifest(rdir, commit)
    answer = []
    for index, entry in enumerate(files):
        path = entry.get("path") if isinstance(entry, dict) else None
        try:
            validate_repo_path(path, f"files[{index}].path")
        except InvalidPathError as exc:
            raise _bad_request(exc) from exc
        existing = manifest.get(path)
        # Everything is stored as a regular file: no LFS/Xet round trips on a local platform.
        answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False,
                       "oid": existing["oid"] if existing else None})
    return {"files": answer, "commitOid": commit}


class _CommitParser:
    """Parse the NDJSON commit body line by line, staging each uploaded file on disk as it arrives."""

    def __init__(self, staging: Path):
        self.staging = staging
        self.line_no = 0
        self.header: dict | None = None
        self.added: dict[str, tuple[Path, str, int]] = {}
        self.deleted_files: list[str] = []
        self.deleted_folders: list[str] = []

    def _fail(self, message: str) -> HTTPException:
        return hub_error(400, f"commit body line {self.line_no}: {message}")

    def feed_line(self, raw: bytes) -> None:
        self.line_no += 1
        if not raw.strip():
            return
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._fail(f"not valid JSON ({exc})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict) or "key" not in item:
            raise self._fail('expected an object {"key": ..., "value": {...}}')
        key, value = item["key"], item["value"]
        if self.header is None:
            if key != "header":
                raise self._fail(f"the first line must be the header, got key {key!r}")
            self.header = value
            return
        if key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
            try:
                path = validate_repo_path(value.get("path"), "path")
            except InvalidPathError as exc:
                raise self._fail(str(exc)) from exc
        if key == "file":
            self._stage_file(path, value)
        elif key == "lfsFile":
            raise self._fail(f"LFS upload of {path!r} is not supported here (preupload answers 'regular')")
        elif key == "deletedFile":
            self.deleted_files.append(path)
        elif key == "deletedFolder":
            self.deleted_folders.append(path)
        elif key == "header":
            raise self._fail("a second header line")
        else:
            raise self._fail(f"unknown operation key {key!r}")

    def _stage_file(self, path: str, value: dict) -> None:
        content, encoding = value.get("content"), value.get("encoding", "base64")
        if not isinstance(content, str):
            raise self._fail(f"file {path!r} has no string 'content'")
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise self._fail(f"content of {path!r} is not valid base64 ({exc})") from exc
        elif encoding in ("utf-8", "utf8"):
            data = content.encode("utf-8")
        else:
            raise self._fail(f"file {path!r} has unsupported encoding {encoding!r}")
        staged = self.staging / f"{len(self.added)}-{uuid.uuid4().hex}"
        with open(staged, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        previous = self.added.get(path)
        if previous:
            previous[0].unlink(missing_ok=True)
        self.added[path] = (staged, git_blob_oid(data), len(data))


@router.post("/v1/hf/api/{plural}/{namespace}/{name}/commit/{revision:path}")
async def commit(plural: str, namespace: str, name: str, revision: str, request: Request):
    repo_type = _repo_type_from_plural(plural)
    settings = _settings(request)
    rdir, meta = _open_repo(request, repo_type, namespace, name)
    if revision != DEFAULT_BRANCH:
        raise hub_error(404, f"commits go to branch {DEFAULT_BRANCH!r}; there is no branch {revision!r}",
                        "RevisionNotFound")
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)

    staging = rdir / "staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        parser = _CommitParser(staging)
        buffer, total = bytearray(), 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            buffer.extend(chunk)
            start = 0
            while (newline := buffer.find(b"\n", start)) != -1:
                await run_in_threadpool(parser.feed_line, bytes(buffer[start:newline]))
                start = newline + 1
            del buffer[:start]
        if buffer:
            await run_in_threadpool(parser.feed_line, bytes(buffer))
        if parser.header is None:
            raise hub_error(400, "commit body is empty: expected a header line and file operations (NDJSON)")
        header = parser.header
        summary = str(header.get("summary") or "")
        description = str(header.get("description") or "")

        def apply() -> dict:
            with _repo_lock(rdir):
                current = _load_meta(rdir)
                if current is None:
                    raise hub_error(404, f"{repo_type} repo {namespace}/{name} was deleted", "RepoNotFound")
                expected_parent = header.get("parentCommit")
                if expected_parent and expected_parent != current["head"]:
                    raise hub_error(412, f"parentCommit {expected_parent} is not the head of {DEFAULT_BRANCH} "
                                         f"({current['head']}); fetch and retry")
                return _write_commit(rdir, current, summary, description, parser.added,
                                     parser.deleted_files, parser.deleted_folders)

        record = await run_in_threadpool(apply)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    commit_url = f"{_repo_url(request, repo_type, namespace, name)}/commit/{record['id']}"
    return {"commitUrl": commit_url, "commitOid": record["id"], "commitMessage": summary, "success": True}


# --------------------------------------------------------------------------------------------------------------
# Listing and downloads
# --------------------------------------------------------------------------------------------------------------


def _tree_entries(manifest: dict, base: str, recursive: bool) -> list[dict] | None:
    """Entries under folder ``base`` ("" = root); None when ``base`` is neither a folder nor a file."""
    prefix = f"{base}/" if base else ""
    if base in manifest:
        m = manifest[base]
        return [{"type": "file", "path": base, "size": m["size"], "oid": m["oid"]}]
    files = {p: m for p, m in manifest.items() if p.startswith(prefix)}
    if base and not files:
        return None
    folders: dict[str, list[str]] = {}
    entries = []
    for path, m in sorted(files.items()):
        rest = path[len(prefix):]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            folders.setdefault(folder, []).append(f"{path}:{m['oid']}")
            if not recursive:
                break
        if recursive or len(parts) == 1:
            entries.append({"type": "file", "path": path, "size": m["size"], "oid": m["oid"]})
    for folder, children in folders.items():
        oid = hashlib.sha1("\n".join(sorted(children)).encode()).hexdigest()
        entries.append({"type": "directory", "path": folder, "oid": oid, "size": 0})
    return sorted(entries, key=lambda e: e["path"])


def _list_tree(request: Request, plural: str, namespace: str, name: str, revision: str, path: str):
    repo_type = _repo_type_from_plural(plural)
    rdir, _, commit = _open_revision(request, repo_type, namespace, name, revision)
    base = path.strip("/")
    if base:
        try:
            validate_repo_path(base)
        except InvalidPathError as exc:
            raise _bad_request(exc) from exc
    recursive = request.query_params.get("recursive", "false").lower() in ("1", "true", "yes")
    entries = _tree_entries(_load_manifest(rdir, commit), base, recursive)
    if entries is None:
        raise hub_error(404, f"{repo_type} repo {namespace}/{name} has no path {base!r} at {revision!r}",
                        "EntryNotFound")
    return entries


@router.get("/v1/hf/api/{plural}/{namespace}/{name}/tree/{revision}")
def list_tree(plural: str, namespace: str, name: str, revision: str, request: Request):
    return _list_tree(request, plural, namespace, name, revision, "")


@router.get("/v1/hf/api/{plural}/{namespace}/{name}/tree/{revision}/{path:path}")
def list_tree_under(plural: str, namespace: str, name: str, revision: str, path: str, request: Request):
    return _list_tree(request, plural, namespace, name, revision, path)


def _resolve_file(request: Request, repo_type: str, namespace: str, name: str, revision: str, path: str):
    rdir, _, commit = _open_revision(request, repo_type, namespace, name, revision)
    try:
        validate_repo_path(path)
        target = safe_join(rdir / "snapshots" / commit, path)
    except InvalidPathError as exc:
        raise _bad_request(exc) from exc
    entry = _load_manifest(rdir, commit).get(path)
    if entry is None or not target.is_file():
        raise hub_error(404, f"{repo_type} repo {namespace}/{name} has no file {path!r} at {revision!r}",
                        "EntryNotFound")
    headers = {"ETag": f'"{entry["oid"]}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
    return FileResponse(target, headers=headers, media_type="application/octet-stream")


@router.api_route("/v1/hf/datasets/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
def resolve_dataset_file(namespace: str, name: str, revision: str, path: str, request: Request):
    return _resolve_file(request, "dataset", namespace, name, revision, path)


@router.api_route("/v1/hf/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
def resolve_model_file(namespace: str, name: str, revision: str, path: str, request: Request):
    return _resolve_file(request, "model", namespace, name, revision, path)


# --------------------------------------------------------------------------------------------------------------
# Data Store namespaces (form-encoded, as the tutorial posts them)
# --------------------------------------------------------------------------------------------------------------


def _namespace_doc(doc: dict) -> dict:
    return {"namespace": doc["namespace"], "created_at": doc["created_at"], "updated_at": doc["updated_at"]}


@router.post("/v1/datastore/namespaces", status_code=201)
async def create_datastore_namespace(request: Request):
    await read_body_limited(request, 64 * 1024)  # a namespace form is tiny; refuse floods before parsing
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        data = await read_json_object(request)
        namespace = data.get("namespace")
    else:
        form = await request.form()
        namespace = form.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise HTTPException(400, "form field 'namespace' is required (body namespace=<name>, form-encoded)")
    try:
        validate_name(namespace, "namespace")
    except InvalidPathError as exc:
        raise HTTPException(400, str(exc)) from exc
    store = request.app.state.ctx.store
    try:
        doc = store.create(DATASTORE_NAMESPACE_KIND, namespace, {"namespace": namespace})
    except AlreadyExists as exc:
        raise HTTPException(409, f"Data Store namespace {namespace!r} already exists") from exc
    return _namespace_doc(doc)


@router.get("/v1/datastore/namespaces")
def list_datastore_namespaces(request: Request):
    docs = request.app.state.ctx.store.list(DATASTORE_NAMESPACE_KIND, newest_first=False)
    return {"namespaces": [_namespace_doc(d) for d in docs]}


def _get_datastore_namespace(request: Request, namespace: str) -> dict:
    try:
        validate_name(namespace, "namespace")
    except InvalidPathError as exc:
        raise HTTPException(400, str(exc)) from exc
    doc = request.app.state.ctx.store.get(DATASTORE_NAMESPACE_KIND, namespace)
    if doc is None:
        raise HTTPException(404, f"Data Store namespace {namespace!r} does not exist")
    return doc


@router.get("/v1/datastore/namespaces/{namespace}")
def get_datastore_namespace(namespace: str, request: Request):
    return _namespace_doc(_get_datastore_namespace(request, namespace))


@router.delete("/v1/datastore/namespaces/{namespace}")
def delete_datastore_namespace(namespace: str, request: Request):
    _get_datastore_namespace(request, namespace)
    settings = _settings(request)
    repos = [
        f"{plural}/{namespace}/{d.name}"
        for plural in REPO_TYPES
        if (settings.repos_dir / plural / namespace).is_dir()
        for d in (settings.repos_dir / plural / namespace).iterdir()
        if (d / "repo.json").is_file()
    ]
    if repos:
        raise HTTPException(409, f"Data Store namespace {namespace!r} still holds {len(repos)} repo(s) "
                                 f"({', '.join(sorted(repos)[:5])}); delete them first")
    request.app.state.ctx.store.delete(DATASTORE_NAMESPACE_KIND, namespace)
    return Response(status_code=204)
