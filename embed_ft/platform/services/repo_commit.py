"""Parsing the Hugging Face protocol's NDJSON commit body, staging each uploaded file on disk as it arrives."""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from pathlib import Path

from ..paths import InvalidPathError, validate_repo_path
from .errors import MalformedRequestError
from .repo_store import StagedFiles, git_blob_oid


class CommitParser:
    """Feed it the commit body line by line; it collects the header, the staged files and the deletions."""

    def __init__(self, staging: Path):
        self.staging = staging
        self.line_no = 0
        self.header: dict | None = None
        self.added: StagedFiles = {}
        self.deleted_files: list[str] = []
        self.deleted_folders: list[str] = []

    def _fail(self, message: str) -> MalformedRequestError:
        return MalformedRequestError(f"commit body line {self.line_no}: {message}")

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
