"""The training data of a v2 automodel job: a fileset of a NeMo Platform v2 Files service, fetched into the home.

On a cluster the fileset lives in the same platform as the Customizer; here filesets live in the v2 Files service
at ``settings.v2_files_url`` (``$EMBED_FT_V2_FILES_URL``, e.g. a locally started `nemo-helix`). A job names its data
as ``[workspace/]fileset[#folder/]`` (``spec.dataset.training``, ``.validation``). The fetch is bounded: at most
``max_fileset_files`` files and ``max_fileset_bytes`` bytes in all (a larger one fails the job naming the limit),
and every file lands inside the job's folder (a path that would leave it is refused).

What the training worker reads (``training/*.jsonl`` and ``validation/*.jsonl`` of NeMo triplets): a fileset laid out
so (the tutorial's layout) is used as it is; any other fileset's files are the split it was named for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from embed_ft.nemo.v2.contract import FILES, FileEntry, Page, workspace_path

from ..paths import InvalidPathError, safe_join
from ..settings import PlatformSettings
from .errors import InvalidInputError, NotFoundError, checked_name
from .training.data import TRAINING_SPLIT, VALIDATION_SPLIT, TrainingDataError

TIMEOUT = (5.0, 120.0)
CHUNK = 1024 * 1024


class FilesetError(TrainingDataError):
    """A fileset that cannot be fetched (gone, too large, unreachable): the job fails with this text."""


@dataclass(frozen=True)
class FilesetRef:
    workspace: str
    name: str
    folder: str = ""  # "" or "dir/sub/" inside the fileset

    @property
    def label(self) -> str:
        return f"{self.workspace}/{self.name}" + (f"#{self.folder}" if self.folder else "")


def parse_fileset_ref(value: str, default_workspace: str, field: str) -> FilesetRef:
    """``[workspace/]name[#folder/]`` -> a checked :class:`FilesetRef`; ``InvalidInputError`` naming ``field``."""
    ref, _, folder = value.partition("#")
    parts = ref.split("/")
    if len(parts) > 2 or not all(parts):
        raise InvalidInputError(field, f"{field} {value[:200]!r} must be 'fileset' or 'workspace/fileset'")
    workspace, name = parts if len(parts) == 2 else (default_workspace, parts[0])
    folder_parts = [p for p in folder.split("/") if p]
    if any(p in (".", "..") for p in folder_parts):
        raise InvalidInputError(field, f"{field}: the folder {folder[:200]!r} must be a relative path in the fileset")
    return FilesetRef(
        checked_name(workspace, f"{field} workspace"),
        checked_name(name, f"{field} fileset"),
        "".join(f"{p}/" for p in folder_parts),
    )


class FilesetFetcher:
    """Lists and downloads v2 filesets from the Files service at ``settings.v2_files_url``."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings

    def _url(self, ref: FilesetRef, *rest: str) -> str:
        base = (self.settings.v2_files_url or "").rstrip("/")
        path = workspace_path(FILES, quote(ref.workspace, safe=""), "filesets", quote(ref.name, safe=""), *rest)
        return f"{base}{path}"

    def list_files(self, ref: FilesetRef) -> dict[str, int]:
        """``{path relative to the ref's folder: size}``; ``NotFoundError`` when the fileset does not exist."""
        if not self.settings.v2_files_url:
            raise FilesetError(
                f"fileset {ref.label}: this platform has no v2 Files service to read filesets from; "
                "set EMBED_FT_V2_FILES_URL (the NeMo Platform base URL) and restart it"
            )
        try:
            response = requests.get(self._url(ref, "files"), timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise FilesetError(f"fileset {ref.label}: the v2 Files service is unreachable: {exc}") from None
        if response.status_code == 404:
            raise NotFoundError(f"fileset {ref.label} not found in the v2 Files service {self.settings.v2_files_url}")
        if response.status_code != 200:
            raise FilesetError(f"fileset {ref.label}: listing its files answered {response.status_code}")
        entries = Page[FileEntry].model_validate(response.json()).data
        selected = {
            e.path.lstrip("/")[len(ref.folder) :]: int(e.size or 0)
            for e in entries
            if e.path.lstrip("/").startswith(ref.folder)
        }
        if len(selected) > self.settings.max_fileset_files:
            raise FilesetError(
                f"fileset {ref.label} has {len(selected)} files; the limit is {self.settings.max_fileset_files} "
                "(max_fileset_files)"
            )
        return selected

    def check(self, ref: FilesetRef, field: str, required: bool = True) -> None:
        """A job's create: the fileset exists and, when ``required``, has files there (else a 422 naming ``field``).
        A validation folder may be empty: the job then trains without validation rows, as on v1."""
        try:
            files = self.list_files(ref)
        except (FilesetError, NotFoundError) as exc:
            raise InvalidInputError(field, f"{field}: {exc}") from None
        if required and not files:
            raise InvalidInputError(field, f"{field}: fileset {ref.label} has no files")

    def fetch_job_data(self, source: dict[str, Any], dest: Path) -> None:
        """A job's ``v2_dataset`` (``{"training": ref, "validation": ref or None}``) into ``dest``, laid out as the
        training worker reads it."""
        self.fetch(FilesetRef(**source["training"]), dest, TRAINING_SPLIT)
        if source.get("validation"):
            self.fetch(FilesetRef(**source["validation"]), dest, VALIDATION_SPLIT)

    def fetch(self, ref: FilesetRef, dest: Path, split: str) -> None:
        """Download the files of ``ref`` for ``split`` into ``dest`` in the worker's layout (see the module)."""
        try:
            files = self.list_files(ref)
        except NotFoundError as exc:
            raise FilesetError(str(exc)) from None
        total = sum(files.values())
        if total > self.settings.max_fileset_bytes:
            raise FilesetError(
                f"fileset {ref.label} holds {total} bytes; the limit is {self.settings.max_fileset_bytes} "
                "(max_fileset_bytes)"
            )
        tutorial_layout = any(path.startswith(f"{split}/") for path in files)
        target = dest if tutorial_layout else dest / split
        written = 0
        for path in sorted(files):
            if not tutorial_layout and not path.endswith(".jsonl"):
                continue
            try:
                local = safe_join(target, path)
            except (InvalidPathError, ValueError):
                raise FilesetError(f"fileset {ref.label}: file path {path[:200]!r} leaves the job's folder") from None
            written = self._download(ref, path, local, written)

    def _download(self, ref: FilesetRef, path: str, local: Path, written: int) -> int:
        """Stream one file to ``local``; ``written`` bytes so far count against the limit."""
        parts = [quote(p, safe="") for p in f"{ref.folder}{path}".split("/")]
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with requests.get(self._url(ref, "-", *parts), stream=True, timeout=TIMEOUT) as response:
                if response.status_code != 200:
                    raise FilesetError(f"fileset {ref.label}: downloading {path!r} answered {response.status_code}")
                with open(local, "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        written += len(chunk)
                        if written > self.settings.max_fileset_bytes:
                            raise FilesetError(
                                f"fileset {ref.label} is larger than the limit of "
                                f"{self.settings.max_fileset_bytes} bytes (max_fileset_bytes)"
                            )
                        out.write(chunk)
        except requests.RequestException as exc:
            raise FilesetError(f"fileset {ref.label}: downloading {path!r} failed: {exc}") from None
        return written
