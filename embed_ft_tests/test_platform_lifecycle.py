"""The platform process's life (issue 24: F12, F13, F15): how it stops, whom ``stop`` signals, slow clients, and
what of the home others can read.

Every test runs the public entry point ``embed-ft platform serve`` (or the launcher that starts it) as a real
process on 127.0.0.1 and talks to it over HTTP or raw sockets; waits are bounded polls on a condition, never a
timed assertion.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from embed_ft.platform.home_lock import flock_holders
from embed_ft.platform.launcher import ensure_running, status, stop
from embed_ft.platform.settings import PlatformSettings
from embed_ft_tests.home_probes import child_env, commit, create_repo, served_platform
from embed_ft_tests.platform_customizer_helpers import TIMEOUT

BOUND_S = 120.0  # generous bound of every wait below (a shared, loaded machine)


@contextmanager
def serving(home: Path, log: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``embed-ft platform serve`` on ``home`` in its own session, no token in its environment; yields (process,
    url); killed at the end if it still runs."""
    env = child_env(without=("EMBED_FT_PLATFORM_TOKEN",))
    with served_platform(home, log, *extra, env=env) as served:
        try:
            yield served.process, served.url
        finally:
            if served.process.poll() is None:
                served.kill()


def test_f12_sigterm_shuts_down_cleanly_and_removes_the_state_file(tmp_path):
    """F12: SIGTERM (to the process group, as a service manager sends it) exited -15 and left ``platform.json``;
    now the server stops as on Ctrl-C: exit status 0, the state file gone, the home's lock free."""
    home = tmp_path / "home"
    with serving(home, tmp_path / "serve.log") as (process, _):
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=BOUND_S)
    assert code == 0, f"SIGTERM ended the server with {code}: {(tmp_path / 'serve.log').read_text()[-1500:]}"
    assert not (home / "platform.json").exists(), "SIGTERM left platform.json behind"
    assert flock_holders(home / "serve.lock") in (set(), None)
    assert status(PlatformSettings(home=home)).get("stale") is None, "status reports a stale record"


def test_f12_stop_does_not_signal_a_pid_that_serves_another_home(tmp_path):
    """F12: ``platform stop --home A`` trusted a stale pid in A's ``platform.json`` and killed home B's server
    (pid reuse, simulated by writing B's pid into A's record). Now it signals only the pid that serves A."""
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    home_a.mkdir()
    with serving(home_b, tmp_path / "b.log") as (server_b, url_b):
        record = json.loads((home_b / "platform.json").read_text())
        (home_a / "platform.json").write_text(json.dumps({**record, "home": str(home_a)}))
        settings_a = PlatformSettings(home=home_a)
        assert status(settings_a)["running"] is False, "status of A counts B's server as A's"
        assert stop(settings_a) is False, "stop of A reported stopping a platform"
        assert server_b.poll() is None, "stop of home A killed home B's server"
        assert requests.get(f"{url_b}/health", timeout=TIMEOUT).status_code == 200
        assert not (home_a / "platform.json").exists(), "the stale record of A was kept"


def _half_sent(url: str, payload: bytes) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=BOUND_S)
    if payload:
        sock.sendall(payload)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes the connection (bounded by the socket's timeout)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@pytest.mark.slow  # 5 s: waits for the server to drop stalled sockets
def test_f13_half_sent_requests_are_dropped(tmp_path):
    """F13: no header or body read timeout: half-sent requests were held open (300 for 65 s). Now a connection
    whose request head or body stops arriving is closed after ``--client-timeout``, and the server keeps serving."""
    with serving(tmp_path / "home", tmp_path / "serve.log", "--client-timeout", "2") as (_, url):
        host = urlsplit(url).netloc
        sockets = [_half_sent(url, b"") for _ in range(5)]
        sockets += [_half_sent(url, f"GET /v1/namespaces HTTP/1.1\r\nHost: {host}\r\n".encode()) for _ in range(10)]
        body_head = (
            f"POST /v1/namespaces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"id": "slow'
        ).encode()
        sockets += [_half_sent(url, body_head) for _ in range(5)]
        try:
            for index, sock in enumerate(sockets):
                assert _closed_by_server(sock), f"half-sent request {index} was held open for {BOUND_S:.0f} s"
        finally:
            for sock in sockets:
                sock.close()
        assert requests.get(f"{url}/v1/namespaces", timeout=TIMEOUT).status_code == 200
        assert "slow" not in [n["id"] for n in requests.get(f"{url}/v1/namespaces", timeout=TIMEOUT).json()["data"]]


def _modes(home: Path) -> dict[str, int]:
    return {
        str(path.relative_to(home)): stat.S_IMODE(path.lstat().st_mode)
        for path in [home, *home.rglob("*")]
        if not path.is_symlink()
    }


def test_f15_home_is_private_and_query_string_tokens_are_not_logged(tmp_path):
    """F15: the home's folders were 0755 and state.sqlite3, serve.lock and uploads 0644; a ``?token=`` query
    string was written to the access log in full. Now the home is 0700 with files 0600, and the log hides it."""
    home = tmp_path / "home"
    settings = PlatformSettings(home=home, port=0, token="header-token-for-f15")
    url = ensure_running(settings, timeout_s=BOUND_S)
    try:
        bearer = {"Authorization": "Bearer header-token-for-f15"}
        for query in ("token=QUERYSECRET1", "page=1&access_token=QUERYSECRET2", "api_key=QUERYSECRET3"):
            requests.get(f"{url}/v1/namespaces?{query}", timeout=TIMEOUT)
        requests.post(f"{url}/v1/datastore/namespaces", data={"namespace": "perm"}, headers=bearer, timeout=TIMEOUT)
        create_repo(url, "perm", "files", headers=bearer)
        commit(url, "perm", "files", {"d/x.txt": b"private"}, headers=bearer)
        modes = _modes(home)
    finally:
        stop(settings)
    log_text = (home / "platform.log").read_text(errors="replace")
    assert "GET /v1/namespaces?" in log_text, "no access log line to check"
    for secret in ("QUERYSECRET1", "QUERYSECRET2", "QUERYSECRET3"):
        assert secret not in log_text, f"the access log holds the query-string secret {secret}"
    for name in ("state.sqlite3", "serve.lock", "platform.log", "datastore/datasets/perm/files/repo.json"):
        assert name in modes, f"{name} was not written: {sorted(modes)[:20]}"
    readable = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert not readable, f"files or folders of the home that others can use: {readable}"
