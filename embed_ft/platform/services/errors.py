"""Domain errors of the platform's services. The api layer maps each class to one HTTP status (one handler).

Services raise these and never HTTP errors, so the same rule answers the same way over HTTP and in-process.
"""

from __future__ import annotations

from typing import Any

from ..paths import InvalidPathError, validate_name


class DomainError(Exception):
    """A request the platform refuses. ``code`` is the Hugging Face protocol's X-Error-Code, where one applies."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class MalformedRequestError(DomainError):
    """The request itself is unreadable or unsafe (bad JSON, a bad path, an unusable embeddings input): 400."""


class NotFoundError(DomainError):
    """The named entity, repo, revision or file does not exist: 404."""


class ConflictError(DomainError):
    """The entity exists already, or its state forbids the operation: 409."""


class PreconditionFailedError(DomainError):
    """The client's view is stale (a commit whose parent is no longer the head): 412."""


class PayloadTooLargeError(DomainError):
    """The request body is over the platform's limit: 413."""


class InvalidInputError(DomainError):
    """A well-formed request with a value the platform cannot accept: 422. ``field`` names the value."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def found(doc: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """``doc``, the store's answer for ``what``; a ``NotFoundError`` "``what`` not found" (404) where it had none."""
    if doc is None:
        raise NotFoundError(f"{what} not found")
    return doc


def checked_name(value: object, what: str) -> str:
    """``value`` if it is a safe entity/repo name, else an ``InvalidInputError`` naming ``what`` and the problem."""
    try:
        return validate_name(value, what)
    except InvalidPathError as exc:
        raise InvalidInputError(what, str(exc)) from None


def split_ref(ref: object, what: str) -> tuple[str, str]:
    """``ns/name`` -> (ns, name), each a checked name; ``InvalidInputError`` naming ``what`` otherwise."""
    if not isinstance(ref, str) or ref.count("/") != 1:
        raise InvalidInputError(what, f"{what} {ref!r} must be of the form 'namespace/name'")
    namespace, name = ref.split("/")
    return checked_name(namespace, f"{what} namespace"), checked_name(name, f"{what} name")
