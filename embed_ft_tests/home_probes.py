"""Helpers of the hardening, recovery, start-up fuzz and lifecycle tests (issues 11, 24): serve a home with the
public entry point ``embed-ft platform serve`` as a subprocess, damage its stored rows the way a crash, a disk
error or an older version leaves them, fill its Data Store over HTTP, read what ``embed-ft platform status`` says
of it, and wait on a condition with a bound (never a timed assertion).

``STORED_KINDS`` is the tests' own statement of each kind the platform stores: its list route, and which fields
of a document name its row (the row's key is their values joined by ``/``; the single-item route is the list
route followed by that key).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from click.testing import CliRunner

from embed_ft.platform.cli import platform_group
from embed_ft_tests.platform_customizer_helpers import TIMEOUT

REPO_ROOT = Path(__file__).resolve().parents[1]
STAMP = "2030-01-01T00:00:00+00:00"
NDJSON = {"Content-Type": "application/x-ndjson"}


@dataclass(frozen=True)
class StoredKind:
    """A kind of stored row: its list route, and the document fields its key is made of (joined by ``/``)."""

    list_route: str
    key_fields: tuple[str, ...] = ("namespace", "name")

    def key(self, doc: dict) -> str:
        return "/".join(str(doc[field]) for field in self.key_fields)


STORED_KINDS = {
    "namespace": StoredKind("/v1/namespaces", ("id",)),
    "dataset": StoredKind("/v1/datasets"),
    "model": StoredKind("/v1/models"),
    "customization_target": StoredKind("/v1/customization/targets"),
    "customization_config": StoredKind("/v1/customization/configs"),
    "customization_job": StoredKind("/v1/customization/jobs", ("id",)),
    "datastore_namespace": StoredKind("/v1/datastore/namespaces", ("namespace",)),
    "deployment_config": StoredKind("/v1/deployment/configs"),
    "model_deployment": StoredKind("/v1/deployment/model-deployments"),
    "evaluation_config": StoredKind("/v1/evaluation/configs"),
    "evaluation_target": StoredKind("/v1/evaluation/targets"),
    "evaluation_job": StoredKind("/v1/evaluation/jobs", ("id",)),
    "evaluation_result": StoredKind("/v1/evaluation/results", ("id",)),
}
LIST_ROUTES = (*(kind.list_route for kind in STORED_KINDS.values()), "/nim/v1/models")


# ------------------------------------------------------------------------------------------------- rows


def put_row(home: Path, kind: str, id_: str, data: object, namespace: str | None = None) -> None:
    """Write one row into the home's state file as a crash or an older version could have left it."""
    put_rows(home, [(kind, id_, data)], namespace)


def put_rows(home: Path, rows: list[tuple[str, str, object]], namespace: str | None = None) -> None:
    with sqlite3.connect(home / "state.sqlite3") as db:
        for kind, id_, data in rows:
            db.execute(
                "INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?,?,?)",
                (kind, id_, namespace, id_.split("/")[-1], data, STAMP, STAMP),
            )


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def status_text(home: Path) -> str:
    """What ``embed-ft platform status --home`` prints (it names what the last start-up set aside)."""
    return CliRunner().invoke(platform_group, ["status", "--home", str(home)]).output


def listed(base_url: str, path: str) -> list[dict]:
    """The items of a list route (asserting it answers 200): ``data``, or the Data Store's ``namespaces``."""
    response = requests.get(f"{base_url}{path}", params={"page_size": 1000}, timeout=TIMEOUT)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
    body = response.json()
    return body["namespaces"] if path == "/v1/datastore/namespaces" else body["data"]


# ------------------------------------------------------------------------------------------------- Data Store


def create_repo(base_url: str, namespace: str, name: str, headers: dict[str, str] | None = None) -> None:
    response = requests.post(
        f"{base_url}/v1/hf/api/repos/create",
        json={"name": name, "organization": namespace, "type": "dataset"},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text


def commit(
    base_url: str, namespace: str, name: str, files: dict[str, bytes], headers: dict[str, str] | None = None
) -> dict:
    """One commit of ``files`` (path -> bytes) to the dataset repo ``namespace/name`` on ``main``."""
    lines = [json.dumps({"key": "header", "value": {"summary": "test"}})]
    lines += [
        json.dumps(
            {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}
        )
        for path, data in files.items()
    ]
    response = requests.post(
        f"{base_url}/v1/hf/api/datasets/{namespace}/{name}/commit/main",
        data="\n".join(lines) + "\n",
        headers={**(headers or {}), **NDJSON},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def delete_repo(base_url: str, namespace: str, name: str) -> requests.Response:
    return requests.delete(
        f"{base_url}/v1/hf/api/repos/delete",
        json={"name": name, "organization": namespace, "type": "dataset"},
        timeout=TIMEOUT,
    )


# ------------------------------------------------------------------------------------------------- processes


def wait_until(check: Callable[[], object], what: str, bound_s: float, interval_s: float = 0.1) -> object:
    """Poll ``check`` until it returns something true (returned); AssertionError naming ``what`` after the bound."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {bound_s:.0f} s")


def child_env(without: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment of a child ``embed-ft``/platform process: this checkout first on the path, the variables
    ``without`` names removed, ``extra`` added."""
    env = {**{k: v for k, v in os.environ.items() if k not in without}, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def serve_command(home: Path, *extra: str) -> list[str]:
    """``embed-ft platform serve`` (the console script of this venv), or ``python -m embed_ft.platform serve``."""
    script = Path(sys.executable).with_name("embed-ft")
    head = (
        [str(script), "platform", "serve"] if script.is_file() else [sys.executable, "-m", "embed_ft.platform", "serve"]
    )
    return [*head, "--home", str(home), "--port", "0", "--log-level", "warning", *extra]


def healthy_url(home: Path, pid: int) -> str | None:
    """The URL of the server ``pid`` when ``<home>/platform.json`` names it and it answers ``/health``."""
    try:
        state = json.loads((home / "platform.json").read_text())
        if state.get("pid") == pid and requests.get(f"{state['url']}/health", timeout=2).status_code == 200:
            return state["url"]
    except (OSError, ValueError, KeyError, requests.RequestException):
        pass
    return None


class ServedPlatform:
    """One ``embed-ft platform serve`` process in its own session (``extra`` arguments, ``env`` of the child);
    its URL comes from ``<home>/platform.json``."""

    def __init__(self, home: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.log = log
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                serve_command(home, *extra),
                cwd=REPO_ROOT,
                env=env or child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            started = wait_until(
                lambda: self.process.poll() is not None or healthy_url(home, self.pid), "the platform to start", 120
            )
        except AssertionError:
            self.kill()
            raise AssertionError(f"platform did not start within 120 s: {log.read_text()[-2000:]}") from None
        if started is True:
            raise AssertionError(f"platform exited with {self.process.returncode}: {log.read_text()[-2000:]}")
        self.url = str(started)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)  # to the whole session: a worker it spawned goes too


@contextmanager
def served_platform(home: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[ServedPlatform]:
    platform = ServedPlatform(home, log, *extra, env=env)
    try:
        yield platform
    finally:
        platform.stop()
