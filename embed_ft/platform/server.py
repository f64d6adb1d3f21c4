"""The serving side of the launcher: run the platform in this process (``embed-ft platform serve``)."""

from __future__ import annotations

import json
import os

import uvicorn

from embed_ft.formats.files import atomic_write_text

from .app import create_app
from .home_lock import LockHeld, serve_lock
from .launcher import check_bind_allowed, connect_host, read_state, serving_holder, state_path
from .settings import PlatformSettings
from .store import utc_now


def serve_forever(settings: PlatformSettings, allow_remote: bool = False, log_level: str = "info") -> None:
    """Run the platform in this process until SIGTERM/SIGINT; record it in ``<home>/platform.json`` meanwhile.

    The process holds ``<home>/serve.lock`` from before it binds until it exits: a second one on the same home
    raises ``HomeInUse`` naming the first one's pid and URL, and touches nothing (no state file, no recovery).
    ``settings.port`` 0 lets the OS pick a free port; the chosen one is what the state file records.
    """
    check_bind_allowed(settings.host, allow_remote, settings.token)
    settings.ensure_dirs()
    try:
        with serve_lock(settings.home):  # held for the process's life: restart recovery runs under it
            _serve_locked(settings, log_level)
    except LockHeld as exc:
        raise HomeInUse(f"the platform home {settings.home} is already served by {serving_holder(settings, exc.owner)}; "
                        "stop it first (embed-ft platform stop) or use another --home") from None


class HomeInUse(RuntimeError):
    """Another process serves this home (the message names its pid and URL)."""


def _serve_locked(settings: PlatformSettings, log_level: str) -> None:
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level=log_level,
                            timeout_graceful_shutdown=10)
    sock = config.bind_socket()  # bind first, so the state file names the port we really hold
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
