"""The one exception handler: domain errors (and unsafe client paths) -> ``{"detail": message}`` with a status.

Hugging Face protocol routes (``/v1/hf/...``) also carry the message in ``X-Error-Message`` and the error class
in ``X-Error-Code``: huggingface_hub picks its exception (RepoNotFound, RevisionNotFound, EntryNotFound) by them.

Request validation errors (pydantic) keep FastAPI's 422 shape ``{"detail": [{"loc", "msg", "type", ...}]}``, but
an ``input`` is echoed only when it is a short JSON scalar: the answer itself must always be writable JSON.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..paths import InvalidPathError
from ..services.errors import (
    ConflictError,
    DomainError,
    InvalidInputError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
)
from ..strict_json import JSONValueError, find_problem

HUB_PREFIX = "/v1/hf/"
STATUS_OF = (
    (MalformedRequestError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PreconditionFailedError, 412),
    (PayloadTooLargeError, 413),
    (InvalidInputError, 422),
    (JSONValueError, 422),
)
MAX_ECHOED_TEXT = 200


def _header_safe(message: str) -> str:
    return message.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")[:500]


def status_of(exc: Exception) -> int:
    if isinstance(exc, InvalidPathError):
        return 400
    return next((status for cls, status in STATUS_OF if isinstance(exc, cls)), 400)


def error_response(path: str, exc: Exception) -> JSONResponse:
    """The answer to ``exc`` raised for a request to ``path`` (also used by the request-body guard)."""
    message = str(exc)
    headers: dict[str, str] = {}
    if path.startswith(HUB_PREFIX):
        headers["X-Error-Message"] = _header_safe(message)
        code = getattr(exc, "code", None)
        if code:
            headers["X-Error-Code"] = code
    return JSONResponse({"detail": message}, status_code=status_of(exc), headers=headers)


def _echoable(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_ECHOED_TEXT and find_problem(value) is None
    return value is None or isinstance(value, (bool, int))


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "loc": [
            part if isinstance(part, (int, str)) and find_problem(part) is None else "?"
            for part in error.get("loc", ())
        ],
        "msg": str(error.get("msg", "")).encode("utf-8", "replace").decode("utf-8"),
        "type": str(error.get("type", "")),
    }
    if "input" in error and _echoable(error["input"]):
        out["input"] = error["input"]
    return out


def validation_message(exc: ValidationError) -> str:
    """The first error of a pydantic validation, naming its field: ``field.path: message``."""
    first = _safe_error(dict(exc.errors()[0]))
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where} is required" if first["type"] == "missing" else f"{where}: {first['msg']}"


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, RequestValidationError):
        return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)
    return error_response(request.url.path, exc)


HANDLED = (DomainError, InvalidPathError, JSONValueError, RequestValidationError)
