"""The Hugging Face protocol's NDJSON commit body, staged on disk as it arrives, with memory bounded independently of
the file sizes.

A commit body is one header line, then one line per operation; a ``file`` line carries the whole file base64
encoded in its ``content`` string, so one line can be gigabytes long. ``CommitParser.feed(chunk)`` takes the body
in chunks of any size: a line up to ``MAX_INLINE_LINE`` is parsed whole (strict JSON: ``strict_json.loads``); a
longer one must be a file line, whose ``content`` string is base64-decoded block by block straight into its staged
file while the rest of the line (path, encoding) is parsed once the line ends. Nothing holds more than about
``MAX_INLINE_LINE`` plus one chunk.

``CommitUpload`` owns one commit in progress: its staging folder (``<repo>/staging/<uuid>/``, removed at the end
and, after a crash, at the next start), the parser, and the final ``RepoStore.commit``. A repo deleted while the
body streams in answers 404 (``RepoNotFound``), never a file-system error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from ..paths import InvalidPathError, validate_repo_path
from ..strict_json import JSONValueError, loads
from .errors import MalformedRequestError, PayloadTooLargeError
from .repo_store import DEFAULT_BRANCH, RepoNotFoundError, RepoStore, StagedFiles, git_blob_oid

# Lines up to this size are parsed in memory; a longer line must be a file line (its content is streamed).
MAX_INLINE_LINE = 1024 * 1024
READ_BLOCK = 1024 * 1024
_T = TypeVar("_T")


def _file_oid(path: Path, size: int) -> str:
    """Git's blob id of a staged file, read back in blocks (the size must be known before the content)."""
    digest = hashlib.sha1(b"blob %d\x00" % size)
    with open(path, "rb") as fh:
        while block := fh.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _string_end(buf: bytes, start: int) -> int:
    """Index of the quote closing the JSON string that starts after ``start`` (-1 when not in ``buf``)."""
    i = start
    while True:
        i = buf.find(b'"', i)
        if i == -1:
            return -1
        backslashes = 0
        while buf[i - 1 - backslashes] == 0x5C:  # '\\'
            backslashes += 1
        if backslashes % 2 == 0:
            return i
        i += 1


def content_start(buf: bytes) -> int | None:
    """Where the value of ``"content"`` (a string, in the line's ``value`` object) starts: the index after its
    opening quote; None when the line does not have one in ``buf``."""
    i, depth, key, n = 0, 0, None, len(buf)
    while i < n:
        c = buf[i]
        if c == 0x22:  # '"'
            if key == b"content" and depth == 2:
                return i + 1
            end = _string_end(buf, i + 1)
            if end == -1:
                return None
            token, j = buf[i + 1 : end], end + 1
            while j < n and buf[j] in b" \t\r":
                j += 1
            key = token if j < n and buf[j] == 0x3A else None  # ':'
            i = j + 1 if key is not None else end + 1
            continue
        if c in b"{[":
            depth += 1
            key = None
        elif c in b"}]":
            depth -= 1
        elif c == 0x2C:  # ','
            key = None
        i += 1
    return None


class _StreamedContent:
    """The base64 ``content`` string of a long file line, decoded into its staged file as it arrives."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.handle: BinaryIO = open(target, "wb")
        self.pending = b""  # base64 characters not yet decoded (fewer than 4, or a trailing backslash)
        self.size = 0

    def write(self, data: bytes) -> None:
        data = self.pending + data
        if data.endswith(b"\\"):
            data, self.pending = data[:-1], b"\\"
        else:
            self.pending = b""
        if b"\\" in data:
            data = data.replace(b"\\/", b"/")  # JSON may escape '/'; no other escape is base64
            if b"\\" in data:
                raise ValueError("an escape sequence that is not base64")
        usable = len(data) - len(data) % 4
        decoded = base64.b64decode(data[:usable], validate=True)
        self.pending = data[usable:] + self.pending
        self.handle.write(decoded)
        self.size += len(decoded)

    def close(self) -> None:
        try:
            if self.pending:
                raise ValueError(f"{len(self.pending)} base64 character(s) left over at the end")
            self.handle.flush()
            os.fsync(self.handle.fileno())
        finally:
            self.handle.close()


class CommitParser:
    """Feed it the commit body in chunks (``feed``) and call ``finish``; it collects the header, the staged files
    and the deletions. Errors are ``MalformedRequestError`` naming the line and the field."""

    def __init__(self, staging: Path, max_line: int = MAX_INLINE_LINE):
        self.staging = staging
        self.max_line = max_line
        self.line_no = 0
        self.header: dict[str, Any] | None = None
        self.added: StagedFiles = {}
        self.deleted_files: list[str] = []
        self.deleted_folders: list[str] = []
        self._buffer = bytearray()
        self._content: _StreamedContent | None = None  # a long line's content string, being decoded
        self._prefix = b""  # that line up to the content's opening quote
        self._after = False  # the content string ended; the buffer holds the rest of the line

    def _fail(self, message: str) -> MalformedRequestError:
        return MalformedRequestError(f"commit body line {self.line_no}: {message}")

    # ---- the byte stream

    def feed(self, chunk: bytes) -> None:
        pos = 0
        while pos < len(chunk):
            if self._content is not None and not self._after:
                quote = chunk.find(b'"', pos)
                end = len(chunk) if quote == -1 else quote
                self._write_content(chunk[pos:end])
                pos = end
                if quote != -1:
                    self._after = True
                continue
            newline = chunk.find(b"\n", pos)
            end = len(chunk) if newline == -1 else newline
            self._buffer += chunk[pos:end]
            pos = end
            if newline != -1:
                pos += 1
                self._end_line()
            elif len(self._buffer) > self.max_line:
                self._long_line()

    def finish(self) -> None:
        if self._buffer or self._content is not None:
            self._end_line()
        if self.header is None:
            raise MalformedRequestError("commit body is empty: expected a header line and file operations (NDJSON)")

    def _long_line(self) -> None:
        if self._content is not None:  # the rest of a streamed line: small (path, encoding) or refused
            raise self._fail(f"the fields after 'content' are longer than {self.max_line} bytes")
        self.line_no += 1
        start = content_start(bytes(self._buffer[: self.max_line + 1]))
        if self.header is None or start is None:
            self.line_no -= 1
            raise PayloadTooLargeError(
                f"commit body line {self.line_no + 1} is longer than {self.max_line} bytes and is not a file line "
                "whose 'content' string can be streamed"
            )
        self._prefix = bytes(self._buffer[:start])
        rest = bytes(self._buffer[start:])
        self._buffer.clear()
        self._content = _StreamedContent(self.staging / f"{len(self.added)}-{uuid.uuid4().hex}")
        quote = rest.find(b'"')
        self._write_content(rest if quote == -1 else rest[:quote])
        if quote != -1:
            self._after = True
            self._buffer += rest[quote:]

    def _write_content(self, data: bytes) -> None:
        try:
            self._content.write(data)  # type: ignore[union-attr]
        except (binascii.Error, ValueError) as exc:
            raise self._fail(f"the content is not valid base64 ({exc})") from None

    def _end_line(self) -> None:
        if self._content is None:
            self.line_no += 1
            raw = bytes(self._buffer)
            self._buffer.clear()
            self.feed_line(raw, counted=True)
            return
        content, self._content = self._content, None
        line = self._prefix + bytes(self._buffer)
        self._buffer.clear()
        self._after = False
        try:
            content.close()
        except ValueError as exc:
            raise self._fail(f"the content is not valid base64 ({exc})") from None
        item = self._parse(line)
        value = item["value"]
        if item["key"] != "file" or value.get("encoding", "base64") != "base64":
            raise self._fail(f"a line longer than {self.max_line} bytes must be a 'file' operation with base64 content")
        path = self._path(value)
        self._add(path, content.target, _file_oid(content.target, content.size), content.size)

    # ---- one line

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            item = loads(raw)
        except JSONValueError as exc:
            raise self._fail(str(exc)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._fail(f"not valid JSON ({exc})") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict) or "key" not in item:
            raise self._fail('expected an object {"key": ..., "value": {...}}')
        return item

    def _path(self, value: dict[str, Any]) -> str:
        try:
            return validate_repo_path(value.get("path"), "path")
        except InvalidPathError as exc:
            raise self._fail(str(exc)) from None

    def feed_line(self, raw: bytes, counted: bool = False) -> None:
        if not counted:
            self.line_no += 1
        if not raw.strip():
            return
        item = self._parse(raw)
        key, value = item["key"], item["value"]
        if self.header is None:
            if key != "header":
                raise self._fail(f"the first line must be the header, got key {key!r}")
            self.header = value
            return
        if key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
            path = self._path(value)
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

    def _stage_file(self, path: str, value: dict[str, Any]) -> None:
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
        self._add(path, staged, git_blob_oid(data), len(data))

    def _add(self, path: str, staged: Path, oid: str, size: int) -> None:
        previous = self.added.get(path)
        if previous:
            previous[0].unlink(missing_ok=True)
        self.added[path] = (staged, oid, size)


class CommitUpload:
    """One commit to branch ``main`` in progress: ``feed`` the body, then ``finish`` (the commit record);
    ``discard`` always (removes the staging folder)."""

    def __init__(self, repos: RepoStore, repo_type: str, namespace: str, name: str, revision: str) -> None:
        rdir, _ = repos.open(repo_type, namespace, name)
        if revision != DEFAULT_BRANCH:
            raise RepoNotFoundError(
                f"commits go to branch {DEFAULT_BRANCH!r}; there is no branch {revision!r}", code="RevisionNotFound"
            )
        self.repos, self.repo = repos, (repo_type, namespace, name)
        self.staging = rdir / "staging" / uuid.uuid4().hex
        self._guard(lambda: self.staging.mkdir(parents=True))
        self.parser = CommitParser(self.staging)

    def _guard(self, step: Callable[[], _T]) -> _T:
        """Run ``step``; a file-system error because the repo was deleted meanwhile becomes a 404."""
        try:
            return step()
        except OSError:
            self.repos.open(*self.repo)  # RepoNotFound (404) when the repo is gone
            raise

    def feed(self, chunk: bytes) -> None:
        self._guard(lambda: self.parser.feed(chunk))

    def finish(self) -> dict[str, Any]:
        self._guard(self.parser.finish)
        header = self.parser.header or {}
        parser = self.parser
        return self._guard(
            lambda: self.repos.commit(
                *self.repo,
                self.summary,
                str(header.get("description") or ""),
                header.get("parentCommit"),
                parser.added,
                parser.deleted_files,
                parser.deleted_folders,
            )
        )

    @property
    def summary(self) -> str:
        return str((self.parser.header or {}).get("summary") or "")

    def discard(self) -> None:
        content = self.parser._content
        if content is not None:
            content.handle.close()
        shutil.rmtree(self.staging, ignore_errors=True)
