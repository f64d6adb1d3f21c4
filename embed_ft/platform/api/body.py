"""The request-body boundary of every route but the upload: a size limit, and JSON the platform can store.

``RequestBodyGuard`` (pure ASGI, mounted by ``app.py``) reads the body of every request except the NDJSON commit
upload (streamed to disk by its own route, bounded by ``max_upload_bytes``):

- more than ``settings.max_json_body_bytes`` (default 1 MiB) -> 413 naming the limit (the rest of the body is
  read and dropped up to ``DRAIN_LIMIT``, so that the client gets the answer instead of a reset connection);
- a JSON body (``application/json``, ``*+json``, or no content type: FastAPI reads those as JSON too) holding NaN,
  Infinity, a number that overflows (1e999), an integer beyond int64 or a lone surrogate -> 422 naming the field
  path (``strict_json.loads``); nothing reaches the routes, so nothing such is stored;
- otherwise the body is handed on unchanged (the routes parse it again: at most 1 MiB, already known good), and
  a watcher waits for the client's disconnect meanwhile: ``request.state.client_gone`` (a ``threading.Event``)
  tells long work whose client went away to stop (Starlette's ``is_disconnected`` cannot see it through the
  token middleware's ``BaseHTTPMiddleware``).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import anyio

from ..services.errors import PayloadTooLargeError
from ..settings import PlatformSettings
from ..strict_json import JSONValueError, loads
from .errors import error_response

# The one route whose body is an upload (NDJSON commit lines with base64 file contents).
UPLOAD_ROUTE = re.compile(r"^/v1/hf/api/[^/]+/[^/]+/[^/]+/commit/")
# ``scope["state"]`` key of a ``threading.Event`` set once the client disconnects (``request.state.client_gone``):
# long work (an encode) checks it between steps and stops.
CLIENT_GONE = "client_gone"
# An oversized body is read and dropped up to this size before the 413 goes out; beyond it the connection closes.
DRAIN_LIMIT = 256 * 1024 * 1024


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


def too_large(limit: int, size: int | None, setting: str = "max_json_body_bytes") -> PayloadTooLargeError:
    got = f" ({size} bytes or more)" if size is not None else ""
    return PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes{got} ({setting})")


class RequestBodyGuard:
    """ASGI middleware: bounded, strictly valid JSON request bodies (see the module docstring)."""

    def __init__(self, app: Any, settings: PlatformSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or UPLOAD_ROUTE.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_json_body_bytes
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        chunks: list[bytes] = []
        total = 0
        more = True
        disconnected = False
        if declared.isdigit() and int(declared) > limit:
            total = limit + 1
        while more and total <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
        if total > limit:
            chunks.clear()
            while more and not disconnected and total <= DRAIN_LIMIT:
                message = await receive()
                disconnected = message["type"] == "http.disconnect"
                total += len(message.get("body", b""))
                more = message.get("more_body", False)
            size = max(total, int(declared)) if declared.isdigit() else total
            await error_response(scope["path"], too_large(limit, size))(scope, receive, send)
            return
        body = b"".join(chunks)
        if body and is_json(headers.get("content-type", "")):
            try:
                loads(body, "body")
            except JSONValueError as exc:
                await error_response(scope["path"], exc)(scope, receive, send)
                return
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass  # malformed JSON: the route answers it (FastAPI's 422 json_invalid, or the route's 400)

        gone = threading.Event()  # read by routes (request.state.client_gone) from worker threads
        gone_now = anyio.Event()
        scope.setdefault("state", {})[CLIENT_GONE] = gone
        if disconnected:
            gone.set()
            gone_now.set()
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone_now.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            """The body is read: the next message from the server is the client's disconnect."""
            while not gone.is_set():
                if (await receive())["type"] == "http.disconnect":
                    gone.set()
                    gone_now.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            try:
                await self.app(scope, replay, send)
            finally:
                tasks.cancel_scope.cancel()
