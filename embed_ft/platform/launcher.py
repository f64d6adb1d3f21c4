"""Start, find and stop the local platform as a detached background process (one per platform home).

The serving process records itself in ``<home>/platform.json`` (pid, host, port, url) once its socket is bound,
and removes the file when it exits. ``ensure_running`` reuses a live, healthy platform of the same home, or starts
``python -m embed_ft.platform serve ...`` in a new session with its output in ``<home>/platform.log``; a lock file
(``<home>/platform.lock``) makes concurrent callers start only one.

The token never goes on a command line (other users can read those): the child gets it through the environment.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import requests

from . import set_aside
from .home_lock import SERVE_LOCK_FILE, LockHeld, file_lock, flock_holders
from .settings import PlatformSettings
from .store import utc_now

STATE_FILE = "platform.json"
LOCK_FILE = "platform.lock"
LOG_FILE = "platform.log"
TOKEN_ENV = "EMBED_FT_PLATFORM_TOKEN"
DEFAULT_START_TIMEOUT_S = 180.0
DEFAULT_STOP_GRACE_S = 15.0
HEALTH_TIMEOUT_S = 3.0
# What the platform process imports that only `embed-ft[local]` installs.
LOCAL_PLATFORM_MODULES = ("fastapi", "uvicorn", "torch", "sentence_transformers")
LOCAL_INSTALL_HINT = (
    "the local platform is not installed: pip install 'embed-ft[local]' (torch's CPU build first, README "
    "'Installing'), or point NDS_URL, NEMO_URL and NIM_URL at a NeMo cluster"
)

# Popen objects of platforms this process started, so that we reap them (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen] = {}


class PlatformLaunchError(RuntimeError):
    """The local platform could not be started (the message says why, with the end of its log)."""


class RemoteBindRefused(ValueError):
    """A non-loopback bind address without ``allow_remote`` and a token."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it counts as remote


def check_bind_allowed(host: str, allow_remote: bool, token: str | None) -> None:
    """Refuse to listen beyond loopback unless explicitly allowed and protected by a token."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise RemoteBindRefused(
            f"refusing to listen on non-loopback host {host!r}: the platform would be reachable from the network. "
            "Pass --allow-remote (and set a token) to do this on purpose, or use 127.0.0.1."
        )
    if not token:
        raise RemoteBindRefused(
            f"refusing to listen on non-loopback host {host!r} without a token: set EMBED_FT_PLATFORM_TOKEN "
            "(or --token) so that every request must carry 'Authorization: Bearer <token>'."
        )


def connect_host(host: str) -> str:
    """The address clients use for a bind address (a wildcard bind is reached over loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def state_path(settings: PlatformSettings) -> Path:
    return settings.home / STATE_FILE


def log_path(settings: PlatformSettings) -> Path:
    return settings.home / LOG_FILE


# --------------------------------------------------------------------------------------------------------------
# The managing side
# --------------------------------------------------------------------------------------------------------------


def read_state(settings: PlatformSettings) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(settings).read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            _children.pop(pid, None)
            return False
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but is gone
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _serves_home(settings: PlatformSettings, pid: int) -> bool:
    """Guard against pid reuse: only a process that holds this home's serve lock is its server (``/proc/locks``
    says who holds it); where the system does not say, a process whose command line is our server."""
    holders = flock_holders(settings.home / SERVE_LOCK_FILE)
    if holders is not None:
        return pid in holders
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ")
    except OSError:
        return True  # no /proc (macOS): trust the state file
    return b"embed_ft.platform" in cmdline or b"embed-ft" in cmdline


def _healthy(url: str) -> bool:
    try:
        response = requests.get(f"{url}/health", timeout=HEALTH_TIMEOUT_S)
        return response.status_code == 200 and response.json().get("status") == "ok"
    except (requests.RequestException, ValueError):
        return False


def status(settings: PlatformSettings) -> dict[str, Any]:
    """Where the platform of ``settings.home`` stands: running/healthy, pid, url, port, and file locations."""
    state = read_state(settings)
    result: dict[str, Any] = {
        "home": str(settings.home),
        "state_file": str(state_path(settings)),
        "log_file": str(log_path(settings)),
        "running": False,
        "healthy": False,
        "pid": None,
        "url": None,
        "port": None,
        # what the last start-up set aside instead of dying on it (see set_aside.py)
        "set_aside": [item.line() for item in set_aside.read(settings.home)],
    }
    if state is None:
        return result
    alive = _pid_alive(state["pid"]) and _serves_home(settings, state["pid"])
    result.update(
        pid=state["pid"],
        url=state.get("url"),
        port=state.get("port"),
        host=state.get("host"),
        started_at=state.get("started_at"),
        running=alive,
    )
    result["healthy"] = bool(alive and state.get("url") and _healthy(state["url"]))
    if not alive:
        result["stale"] = True  # the recorded process is gone (crash, reboot)
    return result


@contextmanager
def _home_lock(settings: PlatformSettings, timeout_s: float) -> Iterator[None]:
    """The launchers' lock of ``<home>/platform.lock`` while one of them starts the platform."""
    try:
        with file_lock(settings.home / LOCK_FILE, timeout_s):
            yield
    except LockHeld as exc:
        raise PlatformLaunchError(
            f"another process holds {settings.home / LOCK_FILE} for more than {timeout_s:.0f} s"
        ) from exc


def serving_holder(settings: PlatformSettings, owner: str) -> str:
    """Who serves ``settings.home`` (for the refusal of a second ``serve``): pid and URL from its state file."""
    state = read_state(settings) or {}
    pid = state.get("pid") or owner or "unknown"
    url = state.get("url") if str(state.get("pid")) == str(pid) else None
    return f"pid {pid}, {url or 'URL not recorded yet'}"


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            sock.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def _log_tail(settings: PlatformSettings, lines: int = 30) -> str:
    try:
        text = log_path(settings).read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def ensure_running(
    settings: PlatformSettings, allow_remote: bool = False, timeout_s: float = DEFAULT_START_TIMEOUT_S
) -> str:
    """The base URL of the platform serving ``settings.home``, starting it (detached) when none is up."""
    check_bind_allowed(settings.host, allow_remote, settings.token)
    current = status(settings)
    if current["healthy"]:
        return current["url"]
    with _home_lock(settings, timeout_s):
        current = status(settings)  # another caller may have started it while we waited for the lock
        if current["healthy"]:
            return current["url"]
        if current["running"]:  # started but not answering yet (or hung): give it the time a start gets
            url = _wait_healthy(settings, current["pid"], None, timeout_s)
            if url:
                return url
            raise PlatformLaunchError(
                f"platform pid {current['pid']} for {settings.home} runs but /health does not answer; "
                f"stop it first (embed-ft platform stop). Log tail:\n{_log_tail(settings)}"
            )
        state_path(settings).unlink(missing_ok=True)  # stale record of a dead process
        return _start(settings, allow_remote, timeout_s)


def local_platform_installed() -> bool:
    """Whether this environment can run the local platform (the `local` extra), without importing anything."""
    return all(importlib.util.find_spec(name) is not None for name in LOCAL_PLATFORM_MODULES)


def _start(settings: PlatformSettings, allow_remote: bool, timeout_s: float) -> str:
    if not local_platform_installed():
        raise PlatformLaunchError(LOCAL_INSTALL_HINT)
    settings.ensure_dirs()
    port = settings.port if settings.port and _port_free(settings.host, settings.port) else 0
    command = [
        sys.executable,
        "-m",
        "embed_ft.platform",
        "serve",
        "--host",
        settings.host,
        "--port",
        str(port),
        "--home",
        str(settings.home),
        "--beir-root",
        str(settings.beir_root),
        "--max-upload-bytes",
        str(settings.max_upload_bytes),
    ]
    if allow_remote:
        command.append("--allow-remote")
    env = dict(os.environ)
    env.pop(TOKEN_ENV, None)
    if settings.token:
        env[TOKEN_ENV] = settings.token
    # The child must import this very package even when it is not installed (tests, a source checkout).
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(os.open(log_path(settings), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        log.write(f"\n=== {utc_now()} starting: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(settings.home),
            start_new_session=True,
            close_fds=True,
        )
    _children[process.pid] = process
    url = _wait_healthy(settings, process.pid, process, timeout_s)
    if url:
        return url
    if process.poll() is None:
        _terminate(process.pid, DEFAULT_STOP_GRACE_S)
        raise PlatformLaunchError(
            f"the platform for {settings.home} did not answer /health within {timeout_s:.0f} s; "
            f"it was stopped. Log tail ({log_path(settings)}):\n{_log_tail(settings)}"
        )
    raise PlatformLaunchError(
        f"the platform for {settings.home} exited with code {process.returncode} while starting. "
        f"Log tail ({log_path(settings)}):\n{_log_tail(settings)}"
    )


def _wait_healthy(settings: PlatformSettings, pid: int, process: subprocess.Popen | None, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            _children.pop(pid, None)
            return None
        if process is None and not _pid_alive(pid):
            return None
        state = read_state(settings)
        if state and state.get("pid") == pid and state.get("url") and _healthy(state["url"]):
            return state["url"]
        time.sleep(0.2)
    return None


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # the whole session: training/evaluation workers go too
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _terminate(pid: int, grace_s: float) -> None:
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            break
        time.sleep(0.1)
    else:
        _signal(pid, signal.SIGKILL)
        for _ in range(50):
            if not _pid_alive(pid):
                break
            time.sleep(0.1)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)


def stop(settings: PlatformSettings, grace_s: float = DEFAULT_STOP_GRACE_S) -> bool:
    """Stop the platform of ``settings.home`` (SIGTERM, SIGKILL after ``grace_s``); True if one was running."""
    state = read_state(settings)
    if state is None:
        return False
    pid = state["pid"]
    was_running = _pid_alive(pid) and _serves_home(settings, pid)
    if was_running:
        _terminate(pid, grace_s)
    state_path(settings).unlink(missing_ok=True)
    return was_running
