"""Typed errors of the NeMo clients, and redaction of secrets from every text they produce.

Every error names the service, the call (method + path), the HTTP status and the server's own message.
Secret values (bearer tokens, HF token, W&B key, ``api_key`` values) are removed from those texts: known
values are registered with :func:`register_secret` by whoever holds them (the clients do it for the
tokens they are given), and well-known secret shapes (``Bearer ...``, ``hf_...``, ``"api_key": "..."``)
are masked even when their value was never registered.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

REDACTED = "***"
MAX_MESSAGE_CHARS = 500
# Shorter values are not registered: masking "a" or "12" everywhere would shred every message.
MIN_SECRET_CHARS = 4

_registry_lock = threading.Lock()
_known_secrets: set[str] = set()

_SECRET_PATTERNS = (
    # Authorization headers echoed back by a server or a proxy.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    # Hugging Face user/org tokens.
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"), REDACTED),
    # "api_key": "value" / api_key=value / 'wandb-api-key': 'value' / "token": "value" in echoed bodies or headers.
    (
        re.compile(
            r"""(?i)(?<![\w-])(["']?(?:api[_-]?key|wandb[_-]api[_-]key|hf[_-]?token|access[_-]?token|token|password|secret)["']?"""
            r"""\s*[:=]\s*["']?)([^"'\s,;}&]+)"""
        ),
        rf"\1{REDACTED}",
    ),
)

# Keys whose values are secrets wherever they appear in a document (metadata, request bodies in logs).
SECRET_KEY_PATTERN = re.compile(
    r"(?i)^(api[_-]?key|wandb[_-]api[_-]key|hf[_-]?token|token|access[_-]?token|authorization|password|secret)$"
)


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` removes it from every later text."""
    if value and isinstance(value, str) and len(value.strip()) >= MIN_SECRET_CHARS:
        with _registry_lock:
            _known_secrets.add(value.strip())


def known_secrets() -> frozenset[str]:
    with _registry_lock:
        return frozenset(_known_secrets)


def redact(text: Any, secrets: Iterable[str | None] = ()) -> str:
    """``text`` as a string with every known or given secret, and every secret-shaped value, masked."""
    out = "" if text is None else str(text)
    values = {s.strip() for s in secrets if s and isinstance(s, str) and s.strip()} | known_secrets()
    # Longest first, so a secret that contains another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        out = out.replace(value, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def redact_document(doc: Any, secrets: Iterable[str | None] = ()) -> Any:
    """A copy of a JSON-like document with values under secret-named keys masked and strings redacted.

    For metadata entries and logged request bodies, e.g. an Evaluator target carrying ``api_key``.
    """
    secrets = tuple(secrets)
    if isinstance(doc, Mapping):
        return {
            key: (REDACTED if SECRET_KEY_PATTERN.match(str(key)) and value else redact_document(value, secrets))
            for key, value in doc.items()
        }
    if isinstance(doc, (list, tuple)):
        return [redact_document(item, secrets) for item in doc]
    if isinstance(doc, str):
        return redact(doc, secrets)
    return doc


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())  # one line: server messages often carry tracebacks with newlines
    return text if len(text) <= limit else text[: limit - 3] + "..."


def message_from_body(body: bytes | str | None, content_type: str = "") -> str:
    """The server's own explanation: JSON ``detail`` / ``message`` / ``error``, else the text, truncated."""
    if body is None:
        return ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if not text.strip():
        return ""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("detail", "message", "error", "errors"):
            value = parsed.get(key)
            if value:
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    value = value["message"]
                return truncate(value if isinstance(value, str) else json.dumps(value))
    if "html" in content_type.lower():
        text = re.sub(r"<[^>]+>", " ", text)
    return truncate(text)


class NemoError(Exception):
    """Base of every error raised by the embed_ft NeMo clients."""


class NemoAPIError(NemoError):
    """A NeMo service answered (or could not be reached for) a call: which service, call, status, message."""

    def __init__(self, service: str, call: str, status: int | None, message: str = "") -> None:
        self.service = service
        self.call = redact(call)
        self.status = status
        self.message = redact(message)
        super().__init__(self._text())

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (Dagster's multiprocess executor)
        return (_rebuild, (type(self), self.__dict__.copy()))

    def _text(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP status"
        text = f"{self.service}: {self.call} failed with {status}"
        return f"{text}: {self.message}" if self.message else text

    def __str__(self) -> str:
        # Redact at render time too: a secret registered after the error was raised is still masked.
        return redact(self._text())


class NotFound(NemoAPIError):
    """404: the object does not exist."""


class Conflict(NemoAPIError):
    """409 (or a create that found a different object under the same name)."""


class Unauthorized(NemoAPIError):
    """401/403: missing or rejected credentials."""


class ServerError(NemoAPIError):
    """5xx after the retries this call was allowed."""


class NemoConnectionError(NemoAPIError):
    """No HTTP answer. ``request_sent`` says whether the server may have received (and acted on) the request."""

    def __init__(self, service: str, call: str, url: str, reason: str, request_sent: bool = False) -> None:
        self.url = redact(url)
        self.reason = redact(reason)
        self.request_sent = request_sent
        where = "after the request was sent (outcome unknown)" if request_sent else "before the request was sent"
        super().__init__(service, call, None, f"cannot reach {self.url} {where}: {self.reason}")


class NemoTimeout(NemoConnectionError):
    """A connect or read timeout; a read timeout leaves the outcome of the call unknown."""


class NemoResponseError(NemoError):
    """A 2xx answer whose body is not what the contract says (unparsable JSON, unknown result shape, bad vectors)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


AnswerT = TypeVar("AnswerT", bound=BaseModel)

# A JSON object as a service answered it (keys are strings; values whatever the contract says).
JsonObject = dict[str, Any]


def describe_shape(value: Any) -> str:
    """A short description of a JSON value for an error message (never the whole value)."""
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:10]}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {json.dumps(value)[:80] if value is not None else ''}".strip()


def json_object(value: Any, what: str) -> JsonObject | None:
    """``value`` when it is a JSON object (or None: no body); a NemoResponseError naming ``what`` otherwise."""
    if value is None or isinstance(value, dict):
        return value
    raise NemoResponseError(f"{what} should be a JSON object, got {describe_shape(value)}")


def _rebuild(cls: type[NemoAPIError], state: dict[str, Any]) -> NemoAPIError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._text())
    return error


def error_for_status(service: str, call: str, status: int, message: str) -> NemoAPIError:
    """The typed error for an HTTP error status."""
    if status == 404:
        cls: type[NemoAPIError] = NotFound
    elif status == 409:
        cls = Conflict
    elif status in (401, 403):
        cls = Unauthorized
    elif status >= 500:
        cls = ServerError
    else:
        cls = NemoAPIError
    return cls(service, call, status, message)


def parse_answer(model: type[AnswerT], doc: Any, call: str) -> AnswerT:
    """``doc`` (a 2xx answer) as the contract's response ``model``; a mismatch is a :class:`NemoResponseError`
    naming the call and the field."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "the body"
        raise NemoResponseError(
            f"{call}: the answer does not match the NeMo contract ({model.__name__}): {where}: {first.get('msg')} "
            f"(got {describe_shape(doc)})"
        ) from None


def checked_answer(model: type[BaseModel], doc: JsonObject, call: str) -> JsonObject:
    """``doc`` as answered (callers keep reading a plain dict), once it parses as the contract's ``model``."""
    parse_answer(model, doc, call)
    return doc
