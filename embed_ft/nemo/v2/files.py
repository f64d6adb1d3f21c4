"""v2 workspaces, filesets and their files (NeMo Platform Entities and Files services).

A fileset is the v2 form of a v1 Data Store dataset repo: files under paths, uploaded one ``PUT`` each to
``.../filesets/{name}/-/{path}``. Creates are idempotent here (409 -> the existing one); the Files service answers
**200** to a fileset create where every other v2 create answers 201, so both are success.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import NemoAPIError
from ..http import CreateResult, ServiceHTTP, create_or_fetch, segment
from .contract import (
    ENTITIES,
    FILES,
    CreateFilesetRequest,
    FileEntry,
    Fileset,
    FilesetPurpose,
    Page,
    Workspace,
    WorkspaceInput,
    workspace_path,
)

UPLOAD_TIMEOUT = (5.0, 600.0)


def fileset_ref(workspace: str, name: str) -> str:
    """How other v2 requests name a fileset (``workspace/name``)."""
    return f"{workspace}/{name}"


class FilesClient:
    """Workspaces, filesets and files over one :class:`ServiceHTTP` (base URL = the platform's)."""

    def __init__(self, http: ServiceHTTP) -> None:
        self.http = http

    # Workspaces (the v1 namespace).
    def get_workspace(self, name: str) -> Workspace | None:
        doc = self.http.get_or_none(f"{ENTITIES}/workspaces/{segment(name)}", call="get workspace")
        return Workspace.model_validate(doc) if doc is not None else None

    def ensure_workspace(self, name: str, description: str | None = None) -> CreateResult:
        body = WorkspaceInput(name=name, description=description).body()
        return create_or_fetch(
            lambda: self.http.post(f"{ENTITIES}/workspaces", json=body, call="create workspace"),
            lambda: self.http.get_or_none(f"{ENTITIES}/workspaces/{segment(name)}", call="get workspace"),
            f"workspace {name}",
        )

    # Filesets.
    def _fileset_path(self, workspace: str, name: str, *rest: str) -> str:
        return workspace_path(FILES, segment(workspace), "filesets", segment(name), *rest)

    def get_fileset(self, workspace: str, name: str) -> Fileset | None:
        doc = self.http.get_or_none(self._fileset_path(workspace, name), call="get fileset")
        return Fileset.model_validate(doc) if doc is not None else None

    def ensure_fileset(
        self, workspace: str, name: str, description: str | None = None, purpose: FilesetPurpose | None = None
    ) -> Fileset:
        body = CreateFilesetRequest(name=name, description=description, purpose=purpose).body()
        doc = create_or_fetch(
            lambda: self.http.post(
                workspace_path(FILES, segment(workspace), "filesets"), json=body, call="create fileset"
            ),
            lambda: self.http.get_or_none(self._fileset_path(workspace, name), call="get fileset"),
            f"fileset {workspace}/{name}",
        )
        return Fileset.model_validate(dict(doc))

    def delete_fileset(self, workspace: str, name: str) -> None:
        try:
            self.http.delete(self._fileset_path(workspace, name), call="delete fileset")
        except NemoAPIError as exc:
            if exc.status != 404:
                raise

    # Files.
    def files_path(self, workspace: str, name: str) -> str:
        """The route listing a fileset's files (for links)."""
        return self._fileset_path(workspace, name, "files")

    def list_files(self, workspace: str, name: str) -> dict[str, int]:
        """``{path: size}`` of every file in the fileset."""
        body = self.http.get(self._fileset_path(workspace, name, "files"), call="list files")
        page = Page[FileEntry].model_validate(body)
        return {entry.path: int(entry.size or 0) for entry in page.data}

    def _file_path(self, workspace: str, name: str, path: str) -> str:
        parts = [segment(p) for p in path.strip("/").split("/") if p]
        if not parts or any(p in (".", "..") for p in path.split("/")):
            raise ValueError(f"file path {path!r} must be a relative path inside the fileset")
        return self._fileset_path(workspace, name, "-", *parts)

    def upload_file(self, workspace: str, name: str, path: str, local: Path) -> dict[str, Any]:
        """PUT one file (streamed from disk). Safe to repeat: the same path is overwritten."""
        with open(local, "rb") as fh:
            response = self.http.request(
                "PUT", self._file_path(workspace, name, path), data=fh, call=f"upload {path}", timeout=UPLOAD_TIMEOUT
            )
        return response.json() if response.content else {}

    def upload_files(self, workspace: str, name: str, files: Mapping[str, Path]) -> dict[str, int]:
        """Upload ``{path in fileset: local file}``; returns ``{path: size}`` as the server lists them afterwards."""
        for path, local in files.items():
            self.upload_file(workspace, name, path, Path(local))
        return self.list_files(workspace, name)

    def download(self, workspace: str, name: str, path: str, dest: Path) -> Path:
        response = self.http.request(
            "GET", self._file_path(workspace, name, path), call=f"download {path}", timeout=UPLOAD_TIMEOUT
        )
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(response.content)
        return dest
