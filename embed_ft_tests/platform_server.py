"""Test helper: run the real local platform (FastAPI on uvicorn) on 127.0.0.1 in a background thread.

    with running_platform(tmp_path, token="s3cret") as (base_url, settings):
        requests.get(f"{base_url}/health")

The server binds a socket on a free port chosen by the OS (no race between picking and binding), and
``settings.port`` is set to that port. Leaving the block stops the server and waits for its thread.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn

from embed_ft.platform.app import create_app
from embed_ft.platform.settings import PlatformSettings

from .faults import install as install_faults

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0


@contextmanager
def running_platform(
    tmp_path: Path, enable_faults: bool = False, **settings_overrides
) -> Iterator[tuple[str, PlatformSettings]]:
    """Start the real app on 127.0.0.1:<free port>; yield ``(base_url, settings)``; stop it on exit.

    ``settings_overrides`` go to ``PlatformSettings`` (e.g. ``token=...``, ``max_upload_bytes=...``,
    ``beir_root=...``, ``home=...``); the home defaults to ``tmp_path / "platform-home"`` so a second
    ``running_platform(tmp_path)`` on the same ``tmp_path`` reopens the same state (restart tests).
    ``enable_faults`` mounts the test-only fault injection (``embed_ft_tests/faults.py``).
    """
    settings_overrides.setdefault("home", Path(tmp_path) / "platform-home")
    settings_overrides["host"] = "127.0.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = PlatformSettings(port=port, **settings_overrides)
    app = create_app(settings, extensions=[install_faults] if enable_faults else [])
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the test below instead of dying silently in the thread
            errors.append(exc)

    thread = threading.Thread(target=serve, name=f"platform-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if errors or not thread.is_alive():
                reason = errors[0] if errors else "thread exited"
                raise RuntimeError(f"platform failed to start on port {port}: {reason}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"platform did not start within {STARTUP_TIMEOUT_S:.0f} s on port {port}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", settings
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT_S)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"platform on port {port} did not stop within {SHUTDOWN_TIMEOUT_S:.0f} s")


@pytest.fixture
def hub_online(monkeypatch):
    """Let huggingface_hub talk to the loopback platform although the suite sets HF_HUB_OFFLINE=1.

    huggingface_hub reads the variable once at import, so the module constant is what must change.
    """
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
