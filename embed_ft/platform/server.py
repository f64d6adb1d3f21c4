"""The serving side of the launcher: run the platform in this process (``embed-ft platform serve``).

- The home is private: the process creates everything with umask 077 (folders 0700, files 0600) and makes the
  home 0700; the access log never shows the value of a secret-looking query parameter (``?token=...``).
- SIGTERM shuts down as Ctrl-C does (jobs stopped, the store closed, ``platform.json`` removed), exit status 0.
- A client whose request (head or body) stops arriving for ``settings.client_read_timeout_s`` is disconnected, so
  that half-sent requests cannot hold connections open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from embed_ft.formats.files import atomic_write_text

from .app import create_app
from .home_lock import LockHeld, serve_lock
from .launcher import check_bind_allowed, connect_host, read_state, serving_holder, state_path
from .settings import PlatformSettings
from .store import utc_now

log = logging.getLogger("embed_ft.platform.server")
# Query parameters whose values the access log hides (``?token=...``, ``?api_key=...``).
SECRET_PARAMETER = re.compile(r"([?&][^=&#]*(?:token|key|secret|password|auth|signature)[^=&#]*=)[^&#]*", re.IGNORECASE)


def serve_forever(settings: PlatformSettings, allow_remote: bool = False, log_level: str = "info") -> None:
    """Run the platform in this process until SIGTERM/SIGINT; record it in ``<home>/platform.json`` meanwhile.

    The process holds ``<home>/serve.lock`` from before it binds until it exits: a second one on the same home
    raises ``HomeInUse`` naming the first one's pid and URL, and touches nothing (no state file, no recovery).
    ``settings.port`` 0 lets the OS pick a free port; the chosen one is what the state file records.
    """
    check_bind_allowed(settings.host, allow_remote, settings.token)
    os.umask(0o077)  # everything this process writes is its user's only
    settings.ensure_dirs()
    signal.signal(signal.SIGTERM, _terminated)  # uvicorn restores it after its graceful shutdown, then calls it
    try:
        with serve_lock(settings.home):  # held for the process's life: restart recovery runs under it
            _serve_locked(settings, log_level)
    except LockHeld as exc:
        raise HomeInUse(
            f"the platform home {settings.home} is already served by {serving_holder(settings, exc.owner)}; "
            "stop it first (embed-ft platform stop) or use another --home"
        ) from None
    except _Terminated:
        log.info("stopped by SIGTERM")


class HomeInUse(RuntimeError):
    """Another process serves this home (the message names its pid and URL)."""


class _Terminated(Exception):
    """SIGTERM outside uvicorn's own handling (before it serves, or re-raised after its graceful shutdown)."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


class _RedactSecrets(logging.Filter):
    """Hides the values of secret-looking query parameters in uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                SECRET_PARAMETER.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


class _SlowClientGuard(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus: a connection whose request (head or body) stops arriving for
    ``read_timeout_s`` is closed. Time during which the app has not read what arrived does not count."""

    read_timeout_s = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._request_incomplete = True
        self._read_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_incomplete:
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_incomplete = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._request_incomplete = False
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if not self._request_incomplete or self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:  # the app is behind, not the client
            self._arm()
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closed the connection of %s: its request stopped arriving for %.0f s", client, self.read_timeout_s)
        self.transport.close()


def _serve_locked(settings: PlatformSettings, log_level: str) -> None:
    guard: Any = type("SlowClientGuard", (_SlowClientGuard,), {"read_timeout_s": settings.client_read_timeout_s})
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        http=guard,
    )
    sock = config.bind_socket()  # bind first, so the state file names the port we really hold
    logging.getLogger("uvicorn.access").addFilter(_RedactSecrets())
    settings.port = sock.getsockname()[1]
    state = {
        "pid": os.getpid(),
        "host": settings.host,
        "port": settings.port,
        "url": f"http://{connect_host(settings.host)}:{settings.port}",
        "home": str(settings.home),
        "started_at": utc_now(),
    }
    atomic_write_text(state_path(settings), json.dumps(state, indent=1))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        current = read_state(settings)
        if current and current.get("pid") == os.getpid():
            state_path(settings).unlink(missing_ok=True)
