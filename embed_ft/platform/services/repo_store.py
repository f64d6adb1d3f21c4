"""Data Store repos on disk: the files and commits behind the Hugging Face protocol routes.

On-disk layout of one repo (``<home>/datastore/<type>s/<namespace>/<name>/``)::

    repo.json               {"type", "namespace", "name", "created_at", "updated_at", "head", "commits": [...]}
    commits/<commit>.json   the manifest of that commit: {path: {"oid", "size"}}
    snapshots/<commit>/...  the files of that commit (unchanged files are hard links to the previous snapshot)
    staging/                uploads of commits in progress

A commit stages its files, builds the new snapshot beside the old ones and then atomically replaces
``repo.json``; that rename is the commit point, so a crash leaves either the old or the new commit, never a mix.
Every commit has a sha1 id; the old snapshots stay readable under their commit id as a revision.
Errors carry the protocol's X-Error-Code (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) as ``code``.
A record that cannot be read (a truncated ``repo.json``, an empty manifest) is ``DamagedRepoError`` (409) naming
the file; such a repo can still be deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from embed_ft.formats.files import atomic_write_text

from ..paths import InvalidPathError, ensure_within, safe_join, validate_name, validate_repo_path
from ..settings import PlatformSettings
from ..store import AlreadyExists, utc_now
from .errors import ConflictError, NotFoundError, PreconditionFailedError
from .repo_records import load_manifest, load_meta

# URL plural -> repo type. Only these two are served (datasets carry the pipeline's data).
REPO_TYPES = {"datasets": "dataset", "models": "model"}
DEFAULT_BRANCH = "main"

StagedFiles = dict[str, tuple[Path, str, int]]  # repo path -> (staged file, oid, size)


class RepoNotFoundError(NotFoundError, LookupError):
    """The repo (or the revision of it) does not exist."""


def git_blob_oid(data: bytes) -> str:
    """Git's blob id (sha1 of ``blob <size>\\0<data>``): what huggingface_hub compares for regular files."""
    h = hashlib.sha1(b"blob %d\x00" % len(data))
    h.update(data)
    return h.hexdigest()


def _plural(repo_type: str) -> str:
    if repo_type not in REPO_TYPES.values():
        raise InvalidPathError(f"repo type {repo_type!r} is not supported; use one of {sorted(REPO_TYPES.values())}")
    return f"{repo_type}s"


def _resolve_revision(meta: dict[str, Any], revision: str) -> str | None:
    """Branch ``main`` is the head; any earlier commit id is a revision too. None when unknown."""
    if revision == DEFAULT_BRANCH:
        head: str | None = meta["head"]
        return head
    if any(c["id"] == revision for c in meta["commits"]):
        return revision
    return None


def _new_commit_id(parent: str | None, summary: str, manifest: dict[str, Any], created_at: str) -> str:
    h = hashlib.sha1()
    for part in (parent or "", created_at, summary, json.dumps(manifest, sort_keys=True), uuid.uuid4().hex):
        h.update(part.encode("utf-8") + b"\n")
    return h.hexdigest()


def _check_no_file_folder_clash(manifest: dict[str, Any]) -> None:
    paths = set(manifest)
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) != "." and str(parent) in paths:
                raise ConflictError(f"{path!r} needs folder {str(parent)!r}, but a file has that path")


class RepoStore:
    """The repos under ``settings.repos_dir``; one lock per repo serialises its commits."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def lock(self, rdir: Path) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(str(rdir), threading.Lock())

    def repo_dir(self, repo_type: str, namespace: str, name: str) -> Path:
        """The folder of one repo (it may not exist). Validates the names and checks containment."""
        validate_name(namespace, "namespace")
        validate_name(name, "repo name")
        root = self.settings.repos_dir
        return ensure_within(root, root / _plural(repo_type) / namespace / name)

    def open(self, repo_type: str, namespace: str, name: str) -> tuple[Path, dict[str, Any]]:
        """(folder, repo.json) of an existing repo."""
        rdir = self.repo_dir(repo_type, namespace, name)
        meta = load_meta(rdir)
        if meta is None:
            raise RepoNotFoundError(f"{repo_type} repo {namespace}/{name} does not exist", code="RepoNotFound")
        return rdir, meta

    def open_revision(
        self, repo_type: str, namespace: str, name: str, revision: str
    ) -> tuple[Path, dict[str, Any], str]:
        """(folder, repo.json, commit id) of ``revision`` (a branch or a commit id) of an existing repo."""
        rdir, meta = self.open(repo_type, namespace, name)
        commit = _resolve_revision(meta, revision)
        if commit is None:
            raise RepoNotFoundError(
                f"{repo_type} repo {namespace}/{name} has no revision {revision!r}", code="RevisionNotFound"
            )
        return rdir, meta, commit

    def files_dir(self, repo_type: str, namespace: str, name: str, revision: str = DEFAULT_BRANCH) -> Path:
        """The folder holding the files of ``namespace/name`` at ``revision`` (read it, never write into it)."""
        rdir, _, commit = self.open_revision(repo_type, namespace, name, revision)
        return rdir / "snapshots" / commit

    def namespace_repos(self, namespace: str) -> list[str]:
        """``<plural>/<namespace>/<name>`` of every repo of a namespace, sorted."""
        root = self.settings.repos_dir
        return sorted(
            f"{plural}/{namespace}/{d.name}"
            for plural in REPO_TYPES
            if (root / plural / namespace).is_dir()
            for d in (root / plural / namespace).iterdir()
            if (d / "repo.json").is_file()
        )

    # ---- create / delete

    def create(self, repo_type: str, namespace: str, name: str) -> dict[str, Any]:
        """Create an empty repo with its initial commit; raises ``AlreadyExists``."""
        rdir = self.repo_dir(repo_type, namespace, name)
        with self.lock(rdir):
            if load_meta(rdir) is not None:
                raise AlreadyExists(f"{repo_type} repo {namespace}/{name} already exists")
            now = utc_now()
            meta: dict[str, Any] = {
                "type": repo_type,
                "namespace": namespace,
                "name": name,
                "created_at": now,
                "updated_at": now,
                "head": None,
                "commits": [],
            }
            (rdir / "commits").mkdir(parents=True, exist_ok=True)
            self._write_commit(rdir, meta, "initial commit", "", {}, [], [])
            return meta

    def delete(self, repo_type: str, namespace: str, name: str) -> None:
        """Remove a repo: rename it away first (atomic), then delete the files. A damaged repo can be deleted."""
        rdir = self.repo_dir(repo_type, namespace, name)
        if not (rdir / "repo.json").is_file():
            raise RepoNotFoundError(f"{repo_type} repo {namespace}/{name} does not exist", code="RepoNotFound")
        with self.lock(rdir):
            trash = self.settings.repos_dir / ".trash" / uuid.uuid4().hex
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(rdir, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # ---- commits

    def commit(
        self,
        repo_type: str,
        namespace: str,
        name: str,
        summary: str,
        description: str,
        parent_commit: str | None,
        added: StagedFiles,
        deleted_files: list[str],
        deleted_folders: list[str],
    ) -> dict[str, Any]:
        """Commit staged files and deletions to the head of ``main``; returns the commit record.

        ``parent_commit``, when given, must still be the head (else 412: the client's view is stale).
        """
        rdir = self.repo_dir(repo_type, namespace, name)
        with self.lock(rdir):
            current = load_meta(rdir)
            if current is None:
                raise RepoNotFoundError(f"{repo_type} repo {namespace}/{name} was deleted", code="RepoNotFound")
            if parent_commit and parent_commit != current["head"]:
                raise PreconditionFailedError(
                    f"parentCommit {parent_commit} is not the head of {DEFAULT_BRANCH} "
                    f"({current['head']}); fetch and retry"
                )
            return self._write_commit(rdir, current, summary, description, added, deleted_files, deleted_folders)

    def _write_commit(
        self,
        rdir: Path,
        meta: dict[str, Any],
        summary: str,
        description: str,
        added: StagedFiles,
        deleted_files: list[str],
        deleted_folders: list[str],
    ) -> dict[str, Any]:
        """Build the new snapshot and switch the head to it (caller holds the repo lock). Staged files are moved
        into the snapshot."""
        parent = meta["head"]
        manifest = dict(load_manifest(rdir, parent)) if parent else {}
        for path in deleted_files:
            if path not in manifest:
                raise NotFoundError(
                    f"cannot delete {path!r}: A file with this name doesn't exist", code="EntryNotFound"
                )
            del manifest[path]
        for folder in deleted_folders:
            prefix = folder.rstrip("/") + "/"
            doomed = [p for p in manifest if p.startswith(prefix)]
            if not doomed:
                raise NotFoundError(f"cannot delete folder {folder!r}: it has no files", code="EntryNotFound")
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

    # ---- reading

    def preupload(self, repo_type: str, namespace: str, name: str, revision: str, paths: list[str]) -> dict[str, Any]:
        """The protocol's preupload answer: every file is uploaded as a regular file; ``oid`` of existing ones."""
        rdir, _, commit = self.open_revision(repo_type, namespace, name, revision)
        manifest = load_manifest(rdir, commit)
        # Everything is stored as a regular file: no LFS/Xet round trips on a local platform.
        files = [
            {
                "path": path,
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": manifest[path]["oid"] if path in manifest else None,
            }
            for path in paths
        ]
        return {"files": files, "commitOid": commit}

    def info(self, repo_type: str, namespace: str, name: str, revision: str) -> dict[str, Any]:
        """The protocol's repo info at ``revision``: ids, dates, and the files (``siblings``)."""
        rdir, meta, commit = self.open_revision(repo_type, namespace, name, revision)
        manifest = load_manifest(rdir, commit)
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

    def tree(
        self, repo_type: str, namespace: str, name: str, revision: str, base: str, recursive: bool
    ) -> list[dict[str, Any]]:
        """Entries under folder ``base`` ("" = the root) at ``revision``, as the protocol lists them."""
        rdir, _, commit = self.open_revision(repo_type, namespace, name, revision)
        if base:
            validate_repo_path(base)
        entries = _tree_entries(load_manifest(rdir, commit), base, recursive)
        if entries is None:
            raise NotFoundError(
                f"{repo_type} repo {namespace}/{name} has no path {base!r} at {revision!r}", code="EntryNotFound"
            )
        return entries

    def file(self, repo_type: str, namespace: str, name: str, revision: str, path: str) -> tuple[Path, str, str]:
        """(file on disk, oid, commit id) of one file at ``revision``."""
        rdir, _, commit = self.open_revision(repo_type, namespace, name, revision)
        validate_repo_path(path)
        target = safe_join(rdir / "snapshots" / commit, path)
        entry = load_manifest(rdir, commit).get(path)
        if entry is None or not target.is_file():
            raise NotFoundError(
                f"{repo_type} repo {namespace}/{name} has no file {path!r} at {revision!r}", code="EntryNotFound"
            )
        return target, entry["oid"], commit


def _hub_date(iso: str) -> str:
    """``2025-01-02T03:04:05.123456Z``: the only date shape huggingface_hub parses."""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tree_entries(manifest: dict[str, Any], base: str, recursive: bool) -> list[dict[str, Any]] | None:
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
        rest = path[len(prefix) :]
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
