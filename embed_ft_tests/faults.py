"""Fault injection for reliability tests: a test-only extension of the local platform's app.

It lives in the test package, so no installed platform carries it: a test mounts it with
``create_app(settings, extensions=[install])`` (``running_platform(..., enable_faults=True)`` does). Mounted, the
app answers a small control API under ``/_faults`` and an outermost ASGI layer applies the armed rules:

    POST   /_faults/rules            arm a rule (body: ``FaultRuleIn``), answers the rule with its id
    GET    /_faults/rules            armed rules and how often each fired
    DELETE /_faults/rules            disarm everything (the fired-count summary is kept)
    GET    /_faults/summary          {"injected": N, "by_action": {...}, "events": [...]}
    POST   /_faults/jobs/fail        make a customization/evaluation job fail mid-run (``JobFailIn``)
    POST   /_faults/jobs/stall       hold evaluation jobs at their next progress update until released
    DELETE /_faults/jobs/stall       release them

Rule actions (each fires on the next ``times`` requests whose method and path match):

- ``status``: answer ``status`` (500/502/503/...) with ``{"detail": "injected fault ..."}``. ``when="before"`` the
  handler never runs (nothing happened); ``when="after"`` it ran and its answer is replaced (a gateway that lost
  the upstream answer: the server did the work, the client cannot know).
- ``reset``: abort the TCP connection (RST) without an answer, ``before`` or ``after`` the handler ran.
- ``delay``: hold the answer ``delay_s`` seconds (``after``: the work is done, the client times out first).
- ``patch_json``: deep-merge ``body`` into a 2xx JSON answer (e.g. keep a deployment ``pending`` forever).
- ``respond``: answer ``status`` with ``body`` instead of running the handler (a NIM that answers nonsense).

Requests with the header ``x-embed-ft-fault-exempt`` (the test harness watching the platform) are never
faulted and do not count. The rules live in this app's memory only; two platforms in one process never share
them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embed_ft.platform.context import PlatformContext
from embed_ft.platform.store import utc_now

from .fault_jobs import MAX_DELAY_S, JobFailIn, JobFaults

log = logging.getLogger("embed_ft.platform.faults")

CONTROL_PREFIX = "/_faults"
# Requests carrying this header are never faulted: the test harness observes the platform through them.
EXEMPT_HEADER = b"x-embed-ft-fault-exempt"


# ---------------------------------------------------------------------------------------------------- rules


class FaultRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["status", "reset", "delay", "patch_json", "respond"]
    path: str = Field(..., description="Regular expression matched (re.fullmatch) against the request path.")
    method: str = Field("*", description="HTTP method, or * for any.")
    times: int = Field(1, ge=1, le=10_000, description="Fire on this many matching requests, then disarm.")
    skip: int = Field(0, ge=0, description="Let this many matching requests through first.")
    when: Literal["before", "after"] = "before"
    status: int = Field(503, ge=100, le=599)
    delay_s: float = Field(0.0, ge=0, le=MAX_DELAY_S)
    body: Any = None
    raw: str | None = Field(None, description="respond: this exact text as the JSON body (e.g. with NaN in it).")

    @field_validator("path")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"path is not a valid regular expression: {exc}") from None
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return value.upper()


@dataclass
class FaultRule:
    id: int
    spec: FaultRuleIn
    pattern: re.Pattern
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.spec.method in ("*", method)) and self.pattern.fullmatch(path) is not None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec.model_dump(),
            "seen": self.seen,
            "fired": self.fired,
            "armed": self.fired < self.spec.times,
        }


@dataclass
class FaultInjector:
    """The armed rules of one app and the record of every fault it injected."""

    rules: list[FaultRule] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1

    def add(self, spec: FaultRuleIn) -> FaultRule:
        with self._lock:
            rule = FaultRule(self._next_id, spec, re.compile(spec.path))
            self._next_id += 1
            self.rules.append(rule)
            return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first armed rule matching this request, counted as fired; None if none fires."""
        with self._lock:
            for rule in self.rules:
                if rule.fired >= rule.spec.times or not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.spec.skip:
                    continue
                rule.fired += 1
                return rule
        return None

    def record(self, action: str, what: str, **extra: Any) -> None:
        with self._lock:
            self.events.append({"at": utc_now(), "action": action, "what": what, **extra})
        log.warning("fault injected: %s %s", action, what)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            by_action: dict[str, int] = {}
            for event in self.events:
                by_action[event["action"]] = by_action.get(event["action"], 0) + 1
            return {
                "injected": len(self.events),
                "by_action": by_action,
                "events": list(self.events),
                "rules": [r.public() for r in self.rules],
            }


# ------------------------------------------------------------------------------------------ ASGI middleware


def _transport_of(send: Any) -> Any:
    """The asyncio transport behind uvicorn's ``send`` (its request cycle object keeps it), or None."""
    seen = 0
    current = send
    while current is not None and seen < 8:
        owner = getattr(current, "__self__", None)
        transport = getattr(owner, "transport", None)
        if transport is not None:
            return transport
        cells = [c.cell_contents for c in (getattr(current, "__closure__", None) or ()) if callable(c.cell_contents)]
        current = cells[0] if cells else None
        seen += 1
    return None


async def _reset(send: Any) -> bool:
    """Abort the connection with a TCP RST (SO_LINGER 0). False if the transport could not be found."""
    transport = _transport_of(send)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
    await asyncio.sleep(0)  # let the server see connection_lost before the app returns
    return True


def _deep_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _deep_merge(base.get(key), value)
        return merged
    return patch


def _json_message(status: int, body: Any, raw: str | None = None) -> tuple[dict, dict]:
    payload = raw.encode() if raw is not None else json.dumps(body).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    }
    return start, {"type": "http.response.body", "body": payload, "more_body": False}


class FaultMiddleware:
    """Outermost ASGI layer: applies the injector's rules to every request except the control API."""

    def __init__(self, app: Any, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"].startswith(CONTROL_PREFIX)
            or any(name == EXEMPT_HEADER for name, _ in scope.get("headers", ()))
        ):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        rule = self.injector.take(method, path)
        if rule is None:
            await self.app(scope, receive, send)
            return
        spec = rule.spec
        what = f"{method} {path}"
        record = lambda **extra: self.injector.record(spec.action, what, rule=rule.id, when=spec.when, **extra)  # noqa: E731

        if spec.action == "respond":
            record(status=spec.status)
            for message in _json_message(spec.status, spec.body, spec.raw):
                await send(message)
            return

        if spec.when == "before":
            if spec.action == "status":
                record(status=spec.status)
                for message in _json_message(spec.status, {"detail": f"injected fault: {spec.status} before {what}"}):
                    await send(message)
                return
            if spec.action == "reset":
                record()
                if await _reset(send):
                    return
                raise RuntimeError("fault injection: cannot reach the transport to reset the connection")
            if spec.action == "delay":
                record(delay_s=spec.delay_s)
                await asyncio.sleep(spec.delay_s)
                await self.app(scope, receive, send)
                return

        # "after" actions (and patch_json): run the handler, hold its answer, then decide.
        messages: list[dict] = []

        async def capture(message: dict) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        handler_status = start["status"] if start else None

        if spec.action == "status":
            record(status=spec.status, handler_status=handler_status)
            for message in _json_message(spec.status, {"detail": f"injected fault: {spec.status} after {what}"}):
                await send(message)
            return
        if spec.action == "reset":
            record(handler_status=handler_status)
            if await _reset(send):
                return
            raise RuntimeError("fault injection: cannot reach the transport to reset the connection")
        if spec.action == "delay":
            record(delay_s=spec.delay_s, handler_status=handler_status)
            await asyncio.sleep(spec.delay_s)
        elif spec.action == "patch_json" and handler_status is not None and 200 <= handler_status < 300:
            raw = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if body is not None:
                record(handler_status=handler_status)
                for message in _json_message(handler_status, _deep_merge(body, spec.body)):
                    await send(message)
                return
        for message in messages:
            await send(message)


# ----------------------------------------------------------------------------------------------- control API


def control_router(injector: FaultInjector, job_faults: JobFaults) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX, include_in_schema=False)

    @router.post("/rules")
    def add_rule(body: FaultRuleIn) -> dict[str, Any]:
        return injector.add(body).public()

    @router.get("/rules")
    def list_rules() -> dict[str, Any]:
        return {"data": [r.public() for r in injector.rules]}

    @router.delete("/rules")
    def clear_rules() -> dict[str, Any]:
        injector.clear()
        return {"cleared": True}

    @router.get("/summary")
    def summary() -> dict[str, Any]:
        return injector.summary()

    @router.post("/jobs/fail")
    def fail_job(body: JobFailIn) -> dict[str, Any]:
        return job_faults.fail(body)

    @router.post("/jobs/stall")
    def stall_jobs() -> dict[str, Any]:
        job_faults.stall_evaluations(True)
        return {"stalled": True}

    @router.delete("/jobs/stall")
    def release_jobs() -> dict[str, Any]:
        job_faults.stall_evaluations(False)
        return {"stalled": False}

    return router


def install(app: Any) -> Callable[[PlatformContext], None]:
    """The app extension (``create_app(settings, extensions=[install])``): mount the control API and wrap the whole
    middleware stack (token check included) in the fault layer.

    The fault layer sits outside everything so that a reset reaches uvicorn's transport and a rule also fires
    on requests the token check refuses. The control routes themselves still require the token. What it returns
    attaches the job faults to the platform's job runners once the app has started (``JobFaults.attach``).
    """
    injector = FaultInjector()
    job_faults = JobFaults(injector.record)
    app.include_router(control_router(injector, job_faults))
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: FaultMiddleware(build(), injector)
    app.state.faults = injector
    log.warning("fault injection is ENABLED on this platform (tests only)")
    return job_faults.attach
