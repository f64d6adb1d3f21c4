"""Where a run's NeMo services are, for the CLI: the environment's URLs (the default; none set: the embedded
platform on the v1 routes), or ``helix``: NeMo Platform v2 on this machine, the cached Helix server for files,
models, the gateway and evaluation and the embedded platform's v2 routes for CPU training and serving, each started
or reused. And what is still running after a run, with the command that stops it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import click

from .helix import Helix, HelixError, ensure_helix, helix_state, stop_helix_home
from .nemo.errors import NemoError
from .nemo.http import ServiceHTTP
from .nemo.v2.contract import MODELS, workspace_path
from .platform.launcher import ensure_running, status as platform_status
from .platform.settings import PlatformSettings
from .resources import API_ENV, DEFAULT_NAMESPACE
from .state_layout import HELIX_HOME_ENV, fallback

ENV, HELIX = "env", "helix"
BACKENDS = (ENV, HELIX)
BACKEND_HELP = (
    "Where the lineage runs: `env` takes the NeMo URLs of the environment (none set: the embedded platform, v1); "
    "`helix` runs it on the NeMo Platform v2 API on this machine: the cached Helix server (nemo-helix, started or "
    "reused) for files, models, the gateway and evaluation, the embedded platform's v2 routes for training and "
    "serving."
)
# Where the embedded platform's automodel route reads training filesets from (the v2 Files service:
# `platform/settings.py`); and the record of the platform started with it, in the Helix home.
PLATFORM_FILES_URL_ENV = "EMBED_FT_V2_FILES_URL"
PAIRED_PLATFORM_FILE = "paired_platform.json"


def helix_backend_env(helix_url: str, local_url: str) -> dict[str, str]:
    """The environment of a run on the v2 profile of this machine (`resources.resources_from_env` reads it)."""
    return {API_ENV: "v2", "NEMO_URL": helix_url, "NEMO_CUSTOMIZER_URL": local_url, "NEMO_DEPLOYMENT_URL": local_url}


class BackendError(click.ClickException):
    """A backend that cannot be used as it is; the message says what to do."""


def _paired_platform(helix_home: Path, files_url: str) -> str:
    """The embedded platform reading its training filesets from ``files_url``: started here with that setting, or
    the one started so before (recorded in the Helix home). One started otherwise is not restarted behind its
    users' backs: the error says how."""
    settings = PlatformSettings()
    record_path = helix_home / PAIRED_PLATFORM_FILE
    current = platform_status(settings)
    if current["running"]:
        try:
            paired = json.loads(record_path.read_text())
        except (OSError, ValueError):
            paired = {}
        if paired.get("pid") != current["pid"] or paired.get("files_url") != files_url:
            raise BackendError(
                f"the embedded platform (pid {current['pid']}, {settings.home}) was not started for Helix {files_url}"
                f" (its automodel jobs could not read Helix's filesets): stop it with `embed-ft platform stop`, then"
                " rerun with --backend helix"
            )
    os.environ[PLATFORM_FILES_URL_ENV] = files_url
    url = ensure_running(settings)
    record_path.write_text(json.dumps({"pid": platform_status(settings)["pid"], "files_url": files_url}))
    return url


def use_backend(backend: str) -> list[str]:
    """Make ``backend`` this process's backend (its servers up, its variables set); lines saying what it uses."""
    if backend != HELIX:
        return []
    helix_home = fallback(HELIX_HOME_ENV)
    try:
        helix = ensure_helix(helix_home)
    except HelixError as exc:
        raise BackendError(f"--backend helix: {exc}") from None
    local_url = _paired_platform(helix_home, helix.url)
    os.environ.update(helix_backend_env(helix.url, local_url))
    return [
        f"backend helix (NeMo Platform v2): Helix {helix.url} (pid {helix.pid}), embedded platform {local_url}",
    ]


def _helix_lines(helix: Optional[Helix]) -> list[str]:
    if helix is None:
        return []
    return [f"  NeMo Platform v2 (Helix) {helix.url} (pid {helix.pid}) -> stop: embed-ft helix stop"]


def _deployments(url: str, namespace: str, v2: bool) -> list[dict[str, Any]]:
    http = ServiceHTTP(url, "deployment", token=os.environ.get("NEMO_TOKEN") or None)
    if v2:
        answer = http.get(workspace_path(MODELS, namespace, "deployments"))
        return [{**d, "namespace": namespace} for d in (answer or {}).get("data", [])]
    answer = http.get("/v1/deployment/model-deployments")
    return [d for d in (answer or {}).get("data", []) if d.get("namespace") == namespace]


def still_running_lines() -> list[str]:
    """What holds resources after a run (the local platform, Helix, NIM deployments) and the command that stops each.

    Asks only what is already up: a stopped local platform is not started to be asked."""
    lines = []
    v2 = (os.environ.get(API_ENV) or "").strip().lower() == "v2"
    nemo_url = os.environ.get("NEMO_DEPLOYMENT_URL") or os.environ.get("NEMO_URL")
    state = platform_status(PlatformSettings())
    if state["running"]:
        lines.append(f"  local platform {state['url']} (pid {state['pid']}) -> stop: embed-ft platform stop")
    lines += _helix_lines(helix_state(fallback(HELIX_HOME_ENV)))
    url = nemo_url or (state["url"] if state["healthy"] else None)
    if url:
        namespace = os.environ.get("NEMO_NAMESPACE") or DEFAULT_NAMESPACE
        try:
            deployments = _deployments(url, namespace, v2)
        except NemoError as exc:
            deployments = []
            lines.append(f"  (could not list deployments: {exc})")
        for d in deployments:
            status = (d.get("status_details") or {}).get("status") or d.get("status") or "?"
            stop = "embed-ft teardown" + (" --backend helix" if os.environ.get(PLATFORM_FILES_URL_ENV) else "")
            lines.append(f"  deployment {d.get('namespace')}/{d.get('name')} ({status}) -> stop: {stop}")
    if not lines:
        return ["nothing is left running"]
    return ["still running (holding resources):", *lines]


@click.group("helix")
def helix_group() -> None:
    """The local NeMo Platform v2 server (nemo-helix) that `embed-ft run --backend helix` starts and reuses."""


@helix_group.command("status")
def helix_status() -> None:
    """Whether it is up: URL, pid, home, log; exit 0 when up, 1 when down."""
    home = fallback(HELIX_HOME_ENV)
    found = helix_state(home)
    if found is None:
        click.echo(f"Helix is not running (home {home}); start: embed-ft run --backend helix")
        raise SystemExit(1)
    click.echo(f"Helix {found.url} (pid {found.pid}), home {home}, log {found.log}")


@helix_group.command("stop")
def helix_stop() -> None:
    """Stop it (its process group: the server and the job processes it started)."""
    home = fallback(HELIX_HOME_ENV)
    click.echo(f"stopped Helix of {home}" if stop_helix_home(home) else f"no Helix running for {home}")
