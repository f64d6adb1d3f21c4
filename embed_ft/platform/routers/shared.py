"""Helpers every service router uses: the platform context of a request, names checked into HTTP errors."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from ..paths import InvalidPathError, validate_name


def request_ctx(request: Request):
    """The ``PlatformContext`` (settings, store, services) the app was created with."""
    return request.app.state.ctx


def checked_name(value: Any, what: str, status: int = 422) -> str:
    """``value`` if it is a safe entity/repo name, else an HTTP error naming ``what`` and the problem."""
    try:
        return validate_name(value, what)
    except InvalidPathError as exc:
        raise HTTPException(status, str(exc)) from exc
