"""The CLI's own process handling and name checks (issue 24: F17, F18).

``embed-ft ui`` runs for real (``dg dev``: the Dagster webserver, the daemon and a code server on 127.0.0.1) and is
stopped the way a service manager stops it, SIGTERM to its pid; every process it started must be gone.
Waits are bounded polls on a condition, never a timed assertion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from embed_ft.defs.experiments import validate_experiment_name
from embed_ft_tests.home_probes import child_env, wait_until as probe_wait_until

START_BOUND_S = 400.0  # dg dev loads the code location (torch, Dagster) on 2 shared cores
STOP_BOUND_S = 120.0


def embed_ft_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("embed-ft")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "embed_ft.cli", *args]


def cli_env(tmp_path: Path) -> dict[str, str]:
    return child_env(
        DAGSTER_HOME=str(tmp_path / "dagster-home"),
        EMBED_FT_HOME=str(tmp_path / "platform-home"),
        NEMO_URL="http://127.0.0.1:9",  # a remote platform is configured: `ui` starts no local one
    )


def wait_until(check: Callable[[], object], what: str, bound_s: float) -> object:
    return probe_wait_until(check, what, bound_s, interval_s=0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _parent_pids() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int) -> set[int]:
    parents = _parent_pids()
    found, frontier = set(), {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def webserver_up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("name", ["exp1\n", "exp1\n\n", "Exp1", "exp/1", "-exp", "e" * 64])
def test_f17_experiment_names_are_matched_whole(name):
    with pytest.raises(ValueError, match="experiment"):
        validate_experiment_name(name)


@pytest.mark.slow  # 8 s: the whole CLI as a subprocess
def test_f17_run_refuses_an_experiment_name_with_a_trailing_newline(tmp_path):
    """F17: ``embed-ft run --experiment $'exp1\\n' --dry-run`` passed preflight (the pattern's ``$`` admits a
    trailing newline); now the name is refused before anything is created, naming the rule."""
    done = subprocess.run(
        embed_ft_command("run", "--experiment", "exp1\n", "--dry-run"),
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 2, f"exited {done.returncode}: {done.stdout[-800:]}"
    assert "--experiment" in done.stdout, done.stdout[-800:]
    assert "preflight passed" not in done.stdout


@pytest.mark.slow
def test_f18_ui_stops_everything_it_started_on_sigterm(tmp_path):
    """F18: SIGTERM ended ``embed-ft ui`` but left ``dg dev``, the webserver, the daemon and the code servers
    running with the port held. Sent here to the command's pid alone, as ``docker stop`` and systemd's
    ``KillMode=mixed`` send it; now every process it started is gone, as after Ctrl-C."""
    port = free_port()
    ui = subprocess.Popen(
        embed_ft_command("ui", "--port", str(port)),
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started: set[int] = set()
    try:
        wait_until(
            lambda: webserver_up(port) or ui.poll() is not None, "the Dagster webserver to answer", START_BOUND_S
        )
        assert ui.poll() is None, f"embed-ft ui exited with {ui.returncode} before serving"
        wait_until(lambda: len(descendants(ui.pid)) >= 3, "dg dev, the webserver and the daemon", STOP_BOUND_S)
        started = descendants(ui.pid)
        os.kill(ui.pid, signal.SIGTERM)
        ui.wait(timeout=STOP_BOUND_S)
        try:
            wait_until(
                lambda: not [pid for pid in started if running(pid)],
                "every process of embed-ft ui to exit",
                STOP_BOUND_S,
            )
        except AssertionError:
            left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in started if running(pid)}
            raise AssertionError(f"still running after SIGTERM: {left}") from None
        wait_until(lambda: not webserver_up(port), "the port to be released", STOP_BOUND_S)
    finally:
        for pid in [ui.pid, *started]:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if ui.poll() is None:
            ui.wait(timeout=60)


HANGING_CHILD = (
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
)


def _foreground_hanging_child(setup: str = "") -> tuple[subprocess.Popen, int]:
    """The foreground runner (``embed-ft ui``'s, after ``setup``) over a child that ignores SIGINT, as a hung
    ``dg dev``: ``(runner, child pid)`` once the child is up."""
    runner = (
        f"import os, sys, embed_ft.foreground as f; {setup}"
        f"raise SystemExit(f.run_foreground([sys.executable, '-c', {HANGING_CHILD!r}], env=dict(os.environ)))"
    )
    ui = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert ui.stdout is not None
        assert ui.stdout.readline().strip() == "up"
        child = [pid for pid, parent in _parent_pids().items() if parent == ui.pid]
        assert len(child) == 1, child
    except BaseException:
        os.killpg(ui.pid, signal.SIGKILL)
        ui.wait(timeout=60)
        raise
    return ui, child[0]


def test_a_foreground_tree_that_ignores_the_interrupt_is_killed_after_the_grace(tmp_path):
    """`embed-ft ui`'s foreground runner: a `dg dev` that hangs in its shutdown (here: a child that ignores SIGINT)
    no longer keeps the command alive after SIGTERM; after the grace (1 s here) the group is killed and the command
    exits 0, as a service manager expects."""
    ui, child = _foreground_hanging_child("f.STOP_GRACE_S = 1.0; ")
    try:
        os.kill(ui.pid, signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
        assert child not in _parent_pids()
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)


def test_a_foreground_tree_goes_when_the_command_is_killed_outright(tmp_path):
    """`embed-ft ui` killed with SIGKILL (kill -9, the OOM killer, a test's fallback) cannot stop `dg dev`; the tree
    used to live on, re-parented to init, with the port held. Now `dg dev` gets SIGTERM when its parent dies (here a
    child that ignores SIGINT, as a hung `dg dev`, and exits on SIGTERM)."""
    ui, child = _foreground_hanging_child()
    try:
        os.kill(ui.pid, signal.SIGKILL)
        ui.wait(timeout=60)
        wait_until(lambda: not running(child), "the foreground tree to exit with its parent", STOP_BOUND_S)
    finally:
        for pid in (ui.pid, child):
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if ui.poll() is None:
            ui.wait(timeout=60)
