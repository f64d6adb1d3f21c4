"""One HTTP session per NeMo service: timeouts, safe retries, typed errors, no leaked secrets.

Retry policy (urllib3 ``Retry`` on the session's adapter):
- GET/HEAD/DELETE are retried with exponential backoff on connection errors, read errors and 500/502/503/504.
- Any method (POST/PATCH included) is retried only on errors raised *before* the request was sent (connection
  refused, connect timeout): the server cannot have acted on it. A POST that was sent but got no answer (read
  timeout, reset) is never resent here: the error says ``request_sent=True`` and the clients look the object up.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from .errors import (
    JsonObject,
    NemoAPIError,
    NemoConnectionError,
    NemoResponseError,
    NemoTimeout,
    ServerError,
    describe_shape,
    error_for_status,
    json_object,
    message_from_body,
    redact,
    register_secret,
)
from .status import is_terminal

log = logging.getLogger("embed_ft.nemo")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# A gateway that timed out or lost its upstream may have let the create through.
UNKNOWN_OUTCOME_STATUSES = frozenset({502, 504})
DEFAULT_TIMEOUT = (5.0, 60.0)
MAX_BACKOFF_S = 30.0
USER_AGENT = "embed-ft-nemo-client/0.1"
# Extra headers whose values are credentials (wandb-api-key, x-api-key, ...): registered for redaction.
SECRET_HEADER = re.compile(r"(?i)key|token|secret|auth")


def segment(value: str) -> str:
    """A path segment, URL-quoted (names like ``llama-embed@v1`` keep their ``@``)."""
    return quote(str(value), safe="@")


class _BearerAuth(requests.auth.AuthBase):
    """Adds ``Authorization: Bearer`` only when a token is set.

    Installed even without a token: a session auth object stops requests from falling back to
    credentials found in ``~/.netrc``.
    """

    def __init__(self, token: str | None) -> None:
        self._token = token.strip() if token and token.strip() else None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def make_retry(retries: int, backoff: float) -> Retry:
    return Retry(
        total=None,
        connect=retries,  # before sending: safe for every method
        read=retries,  # after sending: only for allowed_methods (urllib3 checks the method)
        status=retries,
        other=0,
        redirect=3,
        allowed_methods=IDEMPOTENT_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_max=MAX_BACKOFF_S,
        raise_on_status=False,  # the last 5xx response comes back and becomes a typed ServerError
        respect_retry_after_header=True,
    )


def _request_was_sent(exc: requests.exceptions.RequestException) -> bool:
    """False only when we are sure the request never left: connection refused or connect timeout."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason: Any = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return not isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def outcome_unknown(exc: BaseException) -> bool:
    """True when a create may have happened although it raised: sent-but-unanswered, or a 502/504."""
    if isinstance(exc, NemoConnectionError):
        return exc.request_sent
    return isinstance(exc, ServerError) and exc.status in UNKNOWN_OUTCOME_STATUSES


class ServiceHTTP:
    """JSON over HTTP to one NeMo service (``service`` names it in errors, e.g. ``"Customizer"``)."""

    def __init__(
        self,
        base_url: str,
        service: str,
        token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.5,
        extra_headers: Mapping[str, str | None] | None = None,
        wandb_api_key: str | None = None,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{service}: base URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.timeout: tuple[float, float] = (float(timeout[0]), float(timeout[-1]))
        register_secret(token)
        register_secret(wandb_api_key)
        self.session = requests.Session()
        self.session.auth = _BearerAuth(token)
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        if wandb_api_key:
            self.session.headers["wandb-api-key"] = wandb_api_key
        for name, value in (extra_headers or {}).items():
            if value:  # an empty header value is never sent (an empty key is as wrong as a missing one)
                if SECRET_HEADER.search(name):
                    register_secret(value)
                self.session.headers[name] = value
        adapter = HTTPAdapter(max_retries=make_retry(retries, backoff))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        call: str | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send one call (the adapter retries what is safe) and return the 2xx response, else raise typed."""
        method = method.upper()
        url = self.url(path)
        label = f"{method} {path}" + (f" ({call})" if call else "")
        started = time.monotonic()
        try:
            response = self.session.request(
                method, url, params=params, json=json, data=data, timeout=timeout or self.timeout
            )
        except requests.exceptions.Timeout as exc:
            sent = _request_was_sent(exc)
            kind = "read" if sent else "connect"
            raise NemoTimeout(
                self.service, label, url, f"{kind} timeout after {self._timeout_for(kind):.1f} s", request_sent=sent
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise NemoConnectionError(
                self.service, label, url, _describe(exc), request_sent=_request_was_sent(exc)
            ) from None
        elapsed = time.monotonic() - started
        log.debug(redact(f"{self.service}: {label} -> {response.status_code} in {elapsed:.2f} s"))
        if response.status_code >= 400:
            message = message_from_body(response.content, response.headers.get("content-type", ""))
            raise error_for_status(self.service, label, response.status_code, message)
        return response

    def _timeout_for(self, kind: str) -> float:
        return float(self.timeout[0] if kind == "connect" else self.timeout[-1])

    def _json(self, response: requests.Response, method: str, path: str) -> Any:
        if not response.content or response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            snippet = message_from_body(response.content)
            raise NemoResponseError(
                f"{self.service}: {method} {path} answered {response.status_code} with a body that is not JSON: "
                f"{snippet!r}"
            ) from None

    def get(self, path: str, params: Mapping[str, Any] | None = None, call: str | None = None) -> Any:
        return self._json(self.request("GET", path, params=params, call=call), "GET", path)

    def post(self, path: str, json: Any = None, data: Any = None, call: str | None = None) -> Any:
        return self._json(self.request("POST", path, json=json, data=data, call=call), "POST", path)

    def patch(self, path: str, json: Any = None, call: str | None = None) -> Any:
        return self._json(self.request("PATCH", path, json=json, call=call), "PATCH", path)

    def delete(self, path: str, params: Mapping[str, Any] | None = None, call: str | None = None) -> Any:
        return self._json(self.request("DELETE", path, params=params, call=call), "DELETE", path)

    def get_object(self, path: str, params: Mapping[str, Any] | None = None, call: str | None = None) -> JsonObject:
        """GET of one object (a JSON object, else NemoResponseError)."""
        return json_object(self.get(path, params=params, call=call), f"{self.service}: GET {path}") or {}

    def get_or_none(
        self, path: str, params: Mapping[str, Any] | None = None, call: str | None = None
    ) -> JsonObject | None:
        """GET of one object, or None on 404."""
        try:
            return json_object(self.get(path, params=params, call=call), f"{self.service}: GET {path}")
        except NemoAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def iter_pages(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        page_size: int = 100,
        max_pages: int | None = 100,
        call: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items of a paginated NeMo list (``{"data": [...], "pagination": {"page", "total_pages"}}``).

        Also accepts a bare list or a ``data`` list without pagination (one page). ``max_pages`` bounds the loop
        (with a warning when it cuts the list short); ``None`` reads every page (an exhaustive scan), and then a
        server whose pages do not advance raises :class:`NemoResponseError` instead of looping.
        """
        page, previous_ids = 0, None
        while max_pages is None or page < max_pages:
            page += 1
            body = self.get(path, params={**(params or {}), "page": page, "page_size": page_size}, call=call)
            if isinstance(body, list):
                yield from body
                return
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise NemoResponseError(
                    f"{self.service}: GET {path} should return {{'data': [...]}}, got {describe_shape(body)}"
                )
            ids = [item.get("id") for item in body["data"] if isinstance(item, dict)]
            if max_pages is None and page > 1 and ids and ids == previous_ids:
                stuck = f"answered page {page} with the items of page {page - 1}: its pagination does not advance"
                raise NemoResponseError(f"{self.service}: GET {path} {stuck}")
            previous_ids = ids
            yield from body["data"]
            pagination = body.get("pagination")
            if not isinstance(pagination, dict) or not body["data"]:
                return
            total_pages = pagination.get("total_pages")
            if isinstance(total_pages, int):
                if page >= total_pages:
                    return
            elif len(body["data"]) < page_size:
                return
        log.warning("%s: GET %s stopped after %d pages (max_pages)", self.service, path, max_pages)

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:  # never shows headers (tokens)
        return f"ServiceHTTP({self.service!r}, {self.base_url!r})"


def _describe(exc: BaseException) -> str:
    reason: Any = exc.args[0] if exc.args else exc
    if isinstance(reason, MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    return redact(f"{type(reason).__name__}: {reason}")


class CreateResult(dict[str, Any]):
    """The document a create returned (or the existing one), with ``created`` saying which.

    ``recovered`` is True when the create's answer was lost and the object was found by a lookup.
    It is a plain ``dict`` otherwise (JSON-serializable, comparable).
    """

    def __init__(self, doc: Mapping[str, Any] | None, created: bool, recovered: bool = False) -> None:
        super().__init__(doc or {})
        self.created = created
        self.recovered = recovered


def create_or_fetch(
    create: Any,
    fetch: Any,
    what: str,
    exists_statuses: frozenset[int] | tuple[int, ...] = (409,),
) -> CreateResult:
    """Run ``create()``; on "exists" or an unknown outcome return ``fetch()`` instead of failing.

    - ``exists_statuses`` (409, and 500 for Deployment Management's quirk): fetch; found -> ``created=False``;
      not found -> the original error (a 500 that was not the quirk stays a 500).
    - Unknown outcome (sent but unanswered, 502/504): fetch; found -> ``created=True, recovered=True``;
      not found -> the original error, with a note. Never resent.
    """
    try:
        return CreateResult(create(), created=True)
    except NemoAPIError as exc:
        if exc.status in exists_statuses:
            existing = fetch()
            if existing is None:
                raise
            log.info("%s already exists; using the existing one", what)
            return CreateResult(existing, created=False)
        if outcome_unknown(exc):
            existing = fetch()
            if existing is not None:
                log.warning("%s: the create's answer was lost (%s); found it by lookup", what, exc)
                return CreateResult(existing, created=True, recovered=True)
            exc.add_note(f"Looked {what} up after the unknown outcome: not found, so it was not created (yet).")
        raise


def create_job_once(
    http: "ServiceHTTP", path: str, body: dict[str, Any], idempotency_key: str | None, what: str, find: Any
) -> CreateResult:
    """POST a job exactly once. If the answer is lost after sending, look the job up by its idempotency key
    (``find(key)``) and return it when found (``recovered=True``); without a key, or not found, raise."""
    try:
        return CreateResult(http.post(path, json=body, call=f"create {what}"), created=True)
    except NemoAPIError as exc:
        if idempotency_key and outcome_unknown(exc):
            found = find(idempotency_key)
            if found is not None:
                log.warning("%s create: answer lost (%s); found job %s by key", what, exc, found.get("id"))
                return CreateResult(found, created=True, recovered=True)
            exc.add_note(f"No {what} with idempotency key {idempotency_key!r} was found afterwards.")
        raise


def filter_params(filters: Mapping[str, Any], prefix: str = "filter") -> dict[str, str]:
    """NeMo list filters as the official SDK sends them: nested objects in brackets
    (``{"custom_fields": {"k": "v"}}`` -> ``filter[custom_fields][k]=v``), lists comma-joined, booleans lower case."""
    out: dict[str, str] = {}
    for key, value in filters.items():
        name = f"{prefix}[{key}]"
        if isinstance(value, Mapping):
            out.update(filter_params(value, name))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[name] = str(value).lower()
        elif value is not None:
            out[name] = str(value)
    return out


def find_by_idempotency_key(
    http: "ServiceHTTP",
    path: str,
    idempotency_key: str,
    what: str,
    key_of: Any,
    filters: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The newest object of a paginated list whose ``key_of(obj)`` equals ``idempotency_key``, or None.

    ``filters`` narrow the list on the server (``filter[...]``); every page of the answer is then read and the key
    compared here, so a server that ignores a filter costs time, never a duplicate. There is no page limit: a job
    older than any scan window is still found. A list that cannot be read to its end raises, naming the key (the
    caller must not submit the job again on a guess).
    """
    params = {"sort": "-created_at", **filter_params(filters or {})}
    try:
        for job in http.iter_pages(path, params=params, max_pages=None, call=f"list {what}s"):
            if key_of(job) == idempotency_key:
                return job
    except NemoAPIError as exc:
        unknown = "failed, so whether it exists is unknown: it was not submitted again."
        exc.add_note(f"Looking up the {what} with idempotency key {idempotency_key!r} {unknown}")
        raise
    except NemoResponseError as exc:
        raise NemoResponseError(
            f"cannot look up the {what} with idempotency key {idempotency_key!r}: {exc}; it was not submitted again"
        ) from None
    return None


def cancel_job(http: "ServiceHTTP", jobs_path: str, job_id: str, what: str, get_job: Any) -> dict[str, Any]:
    """Ask a job to stop. A job that already ended (the server answers 400/409/422) is returned as it is."""
    try:
        answer = http.post(f"{jobs_path}/{segment(job_id)}/cancel", call=f"cancel {what}")
        return json_object(answer, f"cancel {what}") or {}
    except NemoAPIError as exc:
        if exc.status in (400, 409, 422):
            job = json_object(get_job(job_id), f"get {what}")
            if job is not None and is_terminal(job):
                return job
        raise
