"""The launcher: a real detached platform process, found again, restarted and stopped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from embed_ft.platform import launcher
from embed_ft.platform.launcher import RemoteBindRefused, check_bind_allowed
from embed_ft.platform.settings import PlatformSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "launcher-test-token"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow  # 6 s: a detached platform started and stopped
def test_ensure_running_status_stop_with_a_detached_process(tmp_path):
    # The configured port is taken by someone else: the launcher must pick another and record it.
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken_port = squatter.getsockname()[1]
    settings = PlatformSettings(home=tmp_path / "home", port=taken_port, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    # A stale record of a dead process must not fool the launcher.
    settings.home.mkdir(parents=True)
    launcher.state_path(settings).write_text(json.dumps({"pid": _dead_pid(), "url": "http://127.0.0.1:9", "port": 9}))
    assert launcher.status(settings)["running"] is False
    try:
        urls: list[str] = []
        errors: list[BaseException] = []

        def start() -> None:
            try:
                urls.append(launcher.ensure_running(settings))
            except BaseException as exc:
                errors.append(exc)

        callers = [threading.Thread(target=start) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(300)
        assert errors == []
        assert len(urls) == 2
        assert urls[0] == urls[1]
        url = urls[0]
        assert not url.endswith(f":{taken_port}")

        state = launcher.status(settings)
        assert state["running"]
        assert state["healthy"]
        assert state["url"] == url
        pid = state["pid"]
        assert pid != os.getpid()
        assert os.getsid(pid) == pid
        log_text = Path(state["log_file"]).read_text()
        assert log_text.count("starting:") == 1  # two callers, one process
        assert TOKEN not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")

        assert requests.get(f"{url}/v1/namespaces", timeout=10).status_code == 401
        requests.post(f"{url}/v1/namespaces", json={"id": "kept"}, headers=auth, timeout=10).raise_for_status()
        assert launcher.ensure_running(settings) == url
        assert launcher.status(settings)["pid"] == pid

        assert launcher.stop(settings) is True
        after = launcher.status(settings)
        assert after["running"] is False
        assert not launcher.state_path(settings).exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert launcher.stop(settings) is False

        # A new process on the same home sees the state of the old one.
        url2 = launcher.ensure_running(settings)
        assert launcher.status(settings)["pid"] != pid
        assert requests.get(f"{url2}/v1/namespaces/kept", headers=auth, timeout=10).status_code == 200
    finally:
        launcher.stop(settings)
        squatter.close()


def test_remote_bind_needs_allow_remote_and_a_token(tmp_path):
    with pytest.raises(RemoteBindRefused, match="--allow-remote"):
        launcher.ensure_running(PlatformSettings(home=tmp_path / "h", host="0.0.0.0"))
    with pytest.raises(RemoteBindRefused, match="token"):
        check_bind_allowed("192.0.2.10", allow_remote=True, token=None)
    check_bind_allowed("192.0.2.10", allow_remote=True, token="t")
    check_bind_allowed("127.0.0.1", allow_remote=False, token=None)
    check_bind_allowed("::1", allow_remote=False, token=None)
    assert not launcher.state_path(PlatformSettings(home=tmp_path / "h")).exists()

    env = {k: v for k, v in os.environ.items() if k != "EMBED_FT_PLATFORM_TOKEN"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "embed_ft.platform",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--home",
            str(tmp_path / "h2"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "non-loopback" in refused.stderr
