"""``embed-ft platform serve|stop|status`` (also ``python -m embed_ft.platform ...``): run or manage the local
platform of one home.

    embed-ft platform serve --home ./.embed_ft/platform --port 8765

The token comes from ``--token`` or, better (command lines are visible to other users), EMBED_FT_PLATFORM_TOKEN.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .launcher import (
    LOCAL_INSTALL_HINT,
    RemoteBindRefused,
    local_platform_installed,
    status as platform_status,
    stop as stop_platform,
)
from .services.inference_backend import RUNTIME_ENV
from .services.runtime_choice import runtime_status
from .settings import DEFAULT_HOST, DEFAULT_PORT, PlatformSettings, service_urls

if local_platform_installed():  # the core install (no `local` extra) has no FastAPI/uvicorn: `serve` says so
    from .server import HomeInUse, serve_forever

HOME_HELP = "platform home (default $EMBED_FT_HOME or ./.embed_ft/platform)"


def _settings(**options) -> PlatformSettings:
    return PlatformSettings(**{key: value for key, value in options.items() if value is not None})


@click.group(name="platform")
def platform_group() -> None:
    """The embedded NeMo-compatible local platform."""


@platform_group.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="bind address")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="port, 0 = any free one")
@click.option("--home", type=click.Path(path_type=Path), help=HOME_HELP)
@click.option("--beir-root", type=click.Path(path_type=Path), help="folder of BEIR datasets (default <home>/beir)")
@click.option("--token", help="require 'Authorization: Bearer <token>' (prefer $EMBED_FT_PLATFORM_TOKEN)")
@click.option("--max-upload-bytes", type=int, help="largest accepted upload")
@click.option("--client-timeout", type=float, help="seconds a request may stop arriving before it is dropped (30)")
@click.option("--allow-remote", is_flag=True, help="allow a non-loopback --host (a token is then required)")
@click.option(
    "--v2-files-url",
    help="NeMo Platform v2 base URL whose filesets v2 automodel jobs train on (default $EMBED_FT_V2_FILES_URL)",
)
@click.option("--log-level", default="info", show_default=True)
def serve(
    host: str,
    port: int,
    home: Path | None,
    beir_root: Path | None,
    token: str | None,
    max_upload_bytes: int | None,
    client_timeout: float | None,
    allow_remote: bool,
    v2_files_url: str | None,
    log_level: str,
) -> None:
    """Serve the platform in the foreground until SIGTERM/Ctrl-C."""
    if not local_platform_installed():
        click.echo(f"error: {LOCAL_INSTALL_HINT}", err=True)
        raise SystemExit(2)
    settings = _settings(
        host=host,
        port=port,
        home=home,
        beir_root=beir_root,
        token=token,
        max_upload_bytes=max_upload_bytes,
        client_read_timeout_s=client_timeout,
        v2_files_url=v2_files_url,
    )
    try:
        serve_forever(settings, allow_remote=allow_remote, log_level=log_level)
    except RemoteBindRefused as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except HomeInUse as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(3) from None


@platform_group.command()
@click.option("--home", type=click.Path(path_type=Path), help=HOME_HELP)
def stop(home: Path | None) -> None:
    """Stop the detached platform of this home."""
    settings = _settings(home=home)
    stopped = stop_platform(settings)
    click.echo("stopped" if stopped else f"no platform was running for {settings.home}")


def describe_status(state: dict) -> list[str]:
    """`platform status` for people: whether it is up, where, and the command that changes that."""
    if state["healthy"]:
        lines = [
            f"local platform: up at {state['url']} (pid {state['pid']}, since {state.get('started_at') or '?'})",
            *(f"  {name}={url}" for name, url in service_urls(state["url"]).items()),
            "stop it with: embed-ft platform stop",
        ]
    elif state["running"]:
        lines = [
            f"local platform: pid {state['pid']} runs but {state['url']}/health does not answer",
            "stop it with: embed-ft platform stop (then any embed-ft run starts a fresh one)",
        ]
    else:
        lines = [
            "local platform: down" + (" (its last process is gone)" if state.get("stale") else ""),
            "start it with: embed-ft platform serve (foreground), or let embed-ft run start it",
        ]
    if state.get("set_aside"):
        lines += [
            "the last start-up set aside what it could not read (and served the rest):",
            *(f"  {line}" for line in state["set_aside"]),
        ]
    return lines + [
        f"home: {state['home']}",
        f"log: {state['log_file']}",
        *describe_runtime(state.get("inference_runtime")),
    ]


def describe_runtime(runtime: dict | None) -> list[str]:
    """The inference runtime setting, and which runtime each calibrated model runs on and why."""
    if not runtime:
        return []
    if runtime.get("error"):
        return [f"inference runtime: {runtime['error']}"]
    lines = [f"inference runtime: {runtime['setting']} ({RUNTIME_ENV}; torch = BEIR-exact, torch-bf16 = opt-in)"]
    for calibration in runtime["calibrations"]:
        flags = ", ".join(calibration["machine"].get("cpu_flags") or []) or "none"
        lines.append(
            f"  {calibration['architecture']} models on {calibration['machine'].get('cpu')} (flags {flags}), "
            f"calibrated {calibration['calibrated_at']}: auto -> {calibration['summary']}"
        )
    if not runtime["calibrations"]:
        lines.append("  no calibration yet: auto measures the runtimes when a model is first deployed")
    return lines


@platform_group.command()
@click.option("--home", type=click.Path(path_type=Path), help=HOME_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON (for scripts)")
def status(home: Path | None, as_json: bool) -> None:
    """Show whether the platform of this home is up, and where. Exit code 0 when up, 1 when down."""
    settings = _settings(home=home)
    state = platform_status(settings)
    state["inference_runtime"] = runtime_status(settings.runtimes_dir, os.environ.get(RUNTIME_ENV))
    if state.get("url"):
        state["urls"] = service_urls(state["url"])  # NDS_URL, NEMO_URL, NIM_URL (the NIM routes under /nim)
    if as_json:
        click.echo(json.dumps(state, default=str, indent=2))
    else:
        click.echo("\n".join(describe_status(state)))
    raise SystemExit(0 if state["healthy"] else 1)
