"""The one exception handler: domain errors (and unsafe client paths) -> ``{"detail": message}`` with a status.

Hugging Face protocol routes (``/v1/hf/...``) also carry the message in ``X-Error-Message`` and the error class
in ``X-Error-Code``: huggingface_hub picks its exception (RepoNotFound, RevisionNotFound, EntryNotFound) by them.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from ..paths import InvalidPathError
from ..services.errors import (
    ConflictError, DomainError, InvalidInputError, MalformedRequestError, NotFoundError, PayloadTooLargeError,
    PreconditionFailedError,
)

HUB_PREFIX = "/v1/hf/"
STATUS_OF = (
    (MalformedRequestError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PreconditionFailedError, 412),
    (PayloadTooLargeError, 413),
    (InvalidInputError, 422),
)


def _header_safe(message: str) -> str:
    return message.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")[:500]


def status_of(exc: Exception) -> int:
    if isinstance(exc, InvalidPathError):
        return 400
    return next((status for cls, status in STATUS_OF if isinstance(exc, cls)), 400)


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    message = str(exc)
    headers: dict[str, str] = {}
    if request.url.path.startswith(HUB_PREFIX):
        headers["X-Error-Message"] = _header_safe(message)
        code = getattr(exc, "code", None)
        if code:
            headers["X-Error-Code"] = code
    return JSONResponse({"detail": message}, status_code=status_of(exc), headers=headers)


HANDLED = (DomainError, InvalidPathError)
