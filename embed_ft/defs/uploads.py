"""Uploading local files to where the backend keeps datasets, unchanged content never twice: a Data Store repo (v1)
or a fileset (v2, `FilesetRepo`), both seen through the same few calls."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Protocol

from ..nemo.v2.files import FilesClient

MANIFEST_PATH = "embed_ft_manifest.json"


class Repo(Protocol):
    """The calls `upload_if_changed` makes: `nemo.datastore.DataStoreClient`'s, and `FilesetRepo`'s."""

    def list_files(self, repo_id: str) -> dict[str, int]: ...

    def download(self, repo_id: str, path: str, dest: str) -> Any: ...

    def upload_files(self, repo_id: str, files: Mapping[str, Path], message: str) -> Optional[str]: ...

    def head_revision(self, repo_id: str) -> Optional[str]: ...


class FilesetRepo:
    """A v2 fileset (``repo_id`` = ``workspace/name``) through the Data Store calls `upload_if_changed` makes.
    Filesets have no commits: the revision is None (the manifest's hashes version the content)."""

    def __init__(self, files: FilesClient) -> None:
        self.files = files

    @staticmethod
    def _split(repo_id: str) -> tuple[str, str]:
        workspace, name = repo_id.split("/", 1)
        return workspace, name

    def list_files(self, repo_id: str) -> dict[str, int]:
        return self.files.list_files(*self._split(repo_id))

    def download(self, repo_id: str, path: str, dest: str) -> Path:
        return self.files.download(*self._split(repo_id), path, Path(dest) / path)

    def upload_files(self, repo_id: str, files: Mapping[str, Path], message: str) -> Optional[str]:
        self.files.upload_files(*self._split(repo_id), files)
        return None

    def head_revision(self, repo_id: str) -> Optional[str]:
        return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def upload_if_changed(context, repo: Repo, repo_id: str, files: dict[str, Path], message: str) -> dict[str, Any]:
    """Upload ``files`` (path in repo -> local file) unless the repo already holds exactly these contents.

    A manifest of content hashes travels with the files, so re-materializing unchanged data uploads nothing.
    """
    manifest = {
        path: {"sha256": file_sha256(local), "size": Path(local).stat().st_size} for path, local in files.items()
    }
    remote_files = repo.list_files(repo_id)
    if MANIFEST_PATH in remote_files:
        with tempfile.TemporaryDirectory() as tmp:
            remote_manifest = json.loads(Path(repo.download(repo_id, MANIFEST_PATH, tmp)).read_text())
        unchanged = remote_manifest == manifest and all(remote_files.get(p) == m["size"] for p, m in manifest.items())
        if unchanged:
            context.log.info(f"{repo_id} already holds these {len(files)} files; nothing uploaded.")
            return {"uploaded": False, "commit": repo.head_revision(repo_id), "manifest": manifest}
    with tempfile.TemporaryDirectory() as tmp:
        manifest_file = Path(tmp) / "manifest.json"
        manifest_file.write_text(json.dumps(manifest, sort_keys=True, indent=1))
        commit = repo.upload_files(
            repo_id, {**{p: Path(local) for p, local in files.items()}, MANIFEST_PATH: manifest_file}, message
        )
    return {"uploaded": True, "commit": commit or repo.head_revision(repo_id), "manifest": manifest}


def ensure_repo(ds_client, namespace: str, name: str) -> str:
    """The Data Store repo ``namespace/name``, created (with its namespace) when missing; returns its id."""
    repo_id = f"{namespace}/{name}"
    ds_client.ensure_namespace(namespace)
    ds_client.create_repo(repo_id)
    return repo_id
