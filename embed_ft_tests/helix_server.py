"""Test helper: NVIDIA's NeMo Platform open-source server (`nemo-helix`) started for real on 127.0.0.1.

    with running_helix(tmp_path) as helix:
        requests.get(f"{helix.url}/status")

The pinned server lives in its own Python 3.12 venv built by `.ci/install-helix` (cached; `./dev install` builds it
too, so a fresh CI machine has it). Every piece of its state (SQLite database, file storage, job working folders,
its CLI's config and notice files) lives under the given folder: HOME, the NHX data dir and the XDG dirs point
there, telemetry is off. It binds a free port on 127.0.0.1 and is stopped by its process group id.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO_ROOT / ".ci" / "install-helix"
# The services Helix can run on a CPU machine without Docker (the recipe); without --services it also
# tries guardrails and exits.
SERVICES = "entities,files,jobs,models,secrets,inference-gateway,auth,evals"
CONTROLLERS = "jobs,models"
# Start-up is ~3 s on an idle machine and ~30 s on 2 busy cores (it loads every plugin).
STARTUP_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 20.0
INSTALL_TIMEOUT_S = 900.0


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
    """The venv of the pinned nemo-helix, built by `.ci/install-helix` when missing (idempotent, cached)."""
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{INSTALL_SCRIPT} failed ({done.returncode}): {done.stderr[-2000:]}")
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


def _healthy(url: str) -> bool:
    """Every started service ready and the controllers healthy (GET /status)."""
    try:
        answer = requests.get(f"{url}/status", timeout=(2, 10))
        body = answer.json() if answer.ok else {}
    except (requests.RequestException, ValueError):
        return False
    services = body.get("services") or {}
    controllers = body.get("controllers") or {}
    return body.get("status") == "healthy" and not services.get("not_ready") and controllers.get("healthy") is True


def stop_helix(process: subprocess.Popen) -> None:
    """SIGINT (its Ctrl-C; it shuts down in about a second), then SIGTERM, then SIGKILL, each to the server's process
    group (it and the job subprocesses it started). Waits on the process itself: a group check would also count
    the exited-but-unreaped server as alive."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=STOP_TIMEOUT_S / 2)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # job subprocesses left in the group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running_helix(home: Path) -> Iterator[Helix]:
    """Start Helix with all its state under ``home``; yield it; stop it by its process group on exit."""
    venv = helix_venv()
    home = Path(home)
    for sub in ("home", "data", "jobs", "files", "xdg"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = home / "platform.yaml"
    config.write_text(platform_config(home, url))
    log = home / "helix.log"
    command = [
        str(venv / "bin" / "nemo"),
        "services",
        "run",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--services",
        SERVICES,
        "--controllers",
        CONTROLLERS,
    ]
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
    helix = Helix(url=url, pid=process.pid, home=home, log=log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"Helix exited with {process.returncode} during start-up:\n{helix.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Helix not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n{helix.log_tail()}")
            time.sleep(0.5)
        yield helix
    finally:
        stop_helix(process)
