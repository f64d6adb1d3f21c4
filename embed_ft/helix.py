"""NVIDIA's NeMo Platform open-source server (`nemo-helix`) on this machine: the v2 services it can run on a CPU
(workspaces, files, models, the inference gateway, jobs, retrieve-eval) for `embed-ft run --backend helix` and the
test suite.

The pinned server lives in its own Python 3.12 venv, built once by the checkout's `.ci/install-helix` (which holds
the exact version; `./dev install` runs it) or named by ``EMBED_FT_HELIX_VENV``. Every piece of its state (SQLite
database, file storage, job folders, its CLI's config and notice files) lives under one home folder: HOME, the NHX
data dir and the XDG dirs point there, telemetry is off. It binds 127.0.0.1 on a free port.

- `running_helix(home)`: started for the duration of a ``with`` block, stopped by its process group (tests);
- `ensure_helix(home)`: the detached server of ``home``, reused when it is up (its pid and URL in ``helix.json``),
  started otherwise; `stop_helix_home(home)` stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO_ROOT / ".ci" / "install-helix"
VENV_ENV = "EMBED_FT_HELIX_VENV"
# The services Helix can run on a CPU machine without Docker; without --services it also tries guardrails and exits.
SERVICES = "entities,files,jobs,models,secrets,inference-gateway,auth,evals"
CONTROLLERS = "jobs,models"
# Start-up is ~3 s on an idle machine and ~30 s on 2 busy cores (it loads every plugin).
STARTUP_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 20.0
INSTALL_TIMEOUT_S = 900.0
STATE_FILE = "helix.json"
# Popen objects of the detached servers this process started: kept so that no finalizer warns about a running child
# at some garbage collection (as `platform/launcher.py` keeps its own), and reaped when stopped here.
_children: dict[int, subprocess.Popen] = {}


class HelixError(RuntimeError):
    """Helix could not be installed, started or reached; the message says why and what to do."""


@dataclass(frozen=True)
class Helix:
    """A running Helix: its base URL, process id, state folder and log."""

    url: str
    pid: int
    home: Path
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def helix_venv() -> Path:
    """The venv of the pinned nemo-helix: ``EMBED_FT_HELIX_VENV``, else the one `.ci/install-helix` builds (once;
    idempotent and cached, a second call costs a file read)."""
    named = os.environ.get(VENV_ENV)
    if named:
        if not (Path(named) / "bin" / "nemo").is_file():
            raise HelixError(f"{VENV_ENV}={named} has no bin/nemo: point it at a venv with nemo-helix installed")
        return Path(named)
    if not INSTALL_SCRIPT.is_file():
        raise HelixError(
            f"no Helix venv: set {VENV_ENV} to a Python 3.12 venv with nemo-helix installed (a checkout builds "
            "one with .ci/install-helix)"
        )
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise HelixError(f"{INSTALL_SCRIPT} failed ({done.returncode}): {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def platform_config(home: Path, url: str) -> str:
    """Helix's platform YAML: no container runtime, no auth, jobs as host subprocesses, files on local disk."""
    return (
        "platform:\n"
        "  runtime: none\n"
        f"  base_url: {url}\n"
        "auth:\n"
        "  enabled: false\n"
        "jobs:\n"
        "  executors:\n"
        "    - provider: subprocess\n"
        "      profile: default\n"
        "      backend: subprocess\n"
        "      config:\n"
        f"        working_directory: {home / 'jobs'}\n"
        "files:\n"
        "  default_storage_config:\n"
        "    type: local\n"
        f"    path: {home / 'files'}\n"
    )


def helix_environment(venv: Path, home: Path) -> dict[str, str]:
    """A clean environment: only PATH, and every state/config/cache folder inside ``home``."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(home / "home"),
        "LANG": "C.UTF-8",
        "NEMO_TELEMETRY_ENABLED": "false",
        "NHX_DATA_DIR": str(home / "data"),
        "XDG_DATA_HOME": str(home / "xdg" / "data"),
        "XDG_STATE_HOME": str(home / "xdg" / "state"),
        "XDG_CONFIG_HOME": str(home / "xdg" / "config"),
        "XDG_CACHE_HOME": str(home / "xdg" / "cache"),
    }


def healthy(url: str) -> bool:
    """Every started service ready and the controllers healthy (GET /status)."""
    try:
        answer = requests.get(f"{url}/status", timeout=(2, 10))
        body = answer.json() if answer.ok else {}
    except (requests.RequestException, ValueError):
        return False
    services = body.get("services") or {}
    controllers = body.get("controllers") or {}
    return body.get("status") == "healthy" and not services.get("not_ready") and controllers.get("healthy") is True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start(home: Path, port: Optional[int] = None) -> tuple[subprocess.Popen, Helix]:
    """Start Helix detached (its own session and process group) with all its state under ``home``, on ``port``
    when it is free (a restarted Helix keeps its URL), else on a free one."""
    venv = helix_venv()
    home = Path(home).resolve()
    for sub in ("home", "data", "jobs", "files", "xdg"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    port = port if port and _port_free(port) else free_port()
    url = f"http://127.0.0.1:{port}"
    config = home / "platform.yaml"
    config.write_text(platform_config(home, url))
    log = home / "helix.log"
    command = [str(venv / "bin" / "nemo"), "services", "run", "--config", str(config), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--services", SERVICES, "--controllers", CONTROLLERS]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=home,
            env=helix_environment(venv, home),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process, Helix(url=url, pid=process.pid, home=home, log=log)


def _wait_healthy(process: subprocess.Popen, helix: Helix) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not healthy(helix.url):
        if process.poll() is not None:
            raise HelixError(f"Helix exited with {process.returncode} during start-up:\n{helix.log_tail()}")
        if time.monotonic() > deadline:
            raise HelixError(f"Helix not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n{helix.log_tail()}")
        time.sleep(0.5)


def _signal_group(pid: int, sig: int) -> bool:
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False


def stop_process(process: subprocess.Popen) -> None:
    """SIGINT (its Ctrl-C; it shuts down in about a second), then SIGTERM, then SIGKILL, each to the server's process
    group (it and the job subprocesses it started). Waits on the process itself: a group check would also count
    the exited-but-unreaped server as alive."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if not _signal_group(process.pid, sig):
            break
        try:
            process.wait(timeout=STOP_TIMEOUT_S / 2)
            break
        except subprocess.TimeoutExpired:
            continue
    _signal_group(process.pid, signal.SIGKILL)  # job subprocesses left in the group
    process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running_helix(home: Path) -> Iterator[Helix]:
    """Start Helix with all its state under ``home``; yield it; stop it by its process group on exit."""
    process, helix = _start(home)
    try:
        _wait_healthy(process, helix)
        yield helix
    finally:
        stop_process(process)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _record(home: Path) -> Optional[Helix]:
    try:
        record = json.loads((Path(home) / STATE_FILE).read_text())
        return Helix(url=str(record["url"]), pid=int(record["pid"]), home=Path(home), log=Path(record["log"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def helix_state(home: Path) -> Optional[Helix]:
    """The detached Helix of ``home`` when its recorded process is alive and healthy, else None."""
    helix = _record(home)
    return helix if helix is not None and _pid_alive(helix.pid) and healthy(helix.url) else None


def ensure_helix(home: Path) -> Helix:
    """The detached Helix of ``home``: the running one, or one started now (it outlives this process; stop it with
    `stop_helix_home`)."""
    home = Path(home).resolve()
    found = helix_state(home)
    if found is not None:
        return found
    home.mkdir(parents=True, exist_ok=True)
    previous = _record(home)
    process, helix = _start(home, port=int(previous.url.rsplit(":", 1)[1]) if previous else None)
    try:
        _wait_healthy(process, helix)
    except BaseException:
        stop_process(process)
        raise
    _children[process.pid] = process
    record = {"url": helix.url, "pid": helix.pid, "log": str(helix.log)}
    (home / STATE_FILE).write_text(json.dumps(record))
    return helix


def stop_helix_home(home: Path) -> bool:
    """Stop the detached Helix of ``home`` (its process group); False when none was running."""
    found = helix_state(home)
    (Path(home) / STATE_FILE).unlink(missing_ok=True)
    if found is None:
        return False
    child = _children.pop(found.pid, None)  # started by this process: poll it (a zombie counts as alive by pid)

    def alive() -> bool:
        return child.poll() is None if child is not None else _pid_alive(found.pid)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if not _signal_group(found.pid, sig):
            break
        deadline = time.monotonic() + STOP_TIMEOUT_S / 2
        while time.monotonic() < deadline and alive():
            time.sleep(0.2)
        if not alive():
            break
    _signal_group(found.pid, signal.SIGKILL)  # job subprocesses left in the group
    if child is not None:
        child.wait(timeout=STOP_TIMEOUT_S)
    return True
