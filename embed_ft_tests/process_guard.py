"""The suite fails when a test leaves processes behind, and names the test.

At session start a token unique to this pytest session goes into ``os.environ`` (``EMBED_FT_TEST_SESSION``), so
every process the suite starts, and everything those start, carries it in ``/proc/<pid>/environ``. After each test
(its fixtures torn down) the guard looks for processes with the token that are no longer descendants of pytest:
orphans, re-parented to init, which nothing in the suite will ever stop (a ``dg dev`` tree whose ``embed-ft ui`` was
killed, a server daemonized by a test). Descendants are not judged per test: module and session fixtures keep
their servers running across tests. At session end every process with the token is judged, descendant or not,
except the interpreter's own helpers (multiprocessing's resource tracker: it exits with pytest).
Processes found get a bounded grace to finish exiting, then the rest are killed and the test (or the session) fails
with their pids, parents and command lines.

An orphan left by a module or session fixture's teardown is reported on the test whose teardown ran it (the last
one of that module or session).

Blind spot: a process started with an environment built from scratch (``env={...}`` without ``os.environ``) does
not carry the token and escapes the guard, with everything it starts: here the Helix server and its job processes
(``embed_ft.helix.helix_environment`` passes only PATH and its own folders).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

SESSION_TOKEN_VAR = "EMBED_FT_TEST_SESSION"
EXIT_GRACE_S = 10.0  # a tree stopped by its test may still be unwinding (SIGINT handlers, atexit)
_POLL_S = 0.2
INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "joblib.externals.loky")
_PROC = Path("/proc")
_first_seen: dict[tuple[int, str], str] = {}  # (pid, start time) -> the test after which it was first seen
_session_leaks: list[str] = []


@dataclass(frozen=True)
class Stray:
    pid: int
    parent: int
    started: str  # start time in clock ticks since boot: with the pid, one process even if the pid is reused

    @cached_property
    def command(self) -> str:  # read only when needed: most scans find nothing to report
        try:
            raw = (_PROC / str(self.pid) / "cmdline").read_bytes()
        except OSError:
            return "?"
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()

    def describe(self) -> str:
        return f"pid {self.pid} (parent {self.parent}): {self.command[:300]}"


def start_session() -> str:
    """Give this session (and every process it starts from now on) its token."""
    token = uuid.uuid4().hex
    os.environ[SESSION_TOKEN_VAR] = token
    return token


def _stat(pid: int) -> tuple[str, int, str] | None:
    """State, parent pid and start time of ``pid``; None once it is gone."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), fields[19]


def _carries(pid: int, marker: bytes) -> bool:
    try:
        return marker in (_PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def marked_processes(token: str) -> list[Stray]:
    """Live processes (not zombies) other than this one whose environment carries ``token``."""
    marker = f"{SESSION_TOKEN_VAR}={token}".encode()
    me = os.getpid()
    found = []
    for entry in os.listdir(_PROC):
        if not entry.isdigit() or int(entry) == me or not _carries(int(entry), marker):
            continue
        stat = _stat(int(entry))
        if stat is not None and stat[0] not in ("Z", "X"):
            found.append(Stray(int(entry), stat[1], stat[2]))
    return found


def _orphans(marked: list[Stray]) -> list[Stray]:
    """Those of ``marked`` that do not descend from this process (their parent chain ends at init)."""
    me = os.getpid()
    parents = {process.pid: process.parent for process in marked}

    def descends(pid: int) -> bool:
        seen: set[int] = set()
        while pid > 1 and pid not in seen:
            if pid == me:
                return True
            seen.add(pid)
            if pid not in parents:  # an ancestor without the token
                stat = _stat(pid)
                if stat is None:
                    return False
                parents[pid] = stat[1]
            pid = parents[pid]
        return False

    return [process for process in marked if not descends(process.pid)]


def _interpreter_helper(process: Stray) -> bool:
    """A helper this interpreter started for itself (multiprocessing's resource tracker or fork server, a joblib
    worker); it lives until pytest exits, then exits by itself."""
    return process.parent == os.getpid() and any(name in process.command for name in INTERPRETER_HELPERS)


def strays(token: str, orphans_only: bool) -> list[Stray]:
    """Processes with ``token``: those no longer descending from this process (``orphans_only``), or all but this
    interpreter's own helpers."""
    marked = marked_processes(token)
    if orphans_only:
        return _orphans(marked)
    return [p for p in marked if not _interpreter_helper(p)]


def reap(token: str, orphans_only: bool) -> list[tuple[Stray, str]]:
    """The strays still there after ``EXIT_GRACE_S``, each with its description, killed (SIGKILL); empty when there
    were none."""
    found = strays(token, orphans_only)
    deadline = time.monotonic() + EXIT_GRACE_S
    while found and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        found = strays(token, orphans_only)
    described = [(process, process.describe()) for process in found]  # before the kill: its command line goes
    for process in found:
        stat = _stat(process.pid)
        if stat is not None and stat[2] == process.started:  # the same process, not a reused pid
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return described


def _token() -> str | None:
    return os.environ.get(SESSION_TOKEN_VAR)


def _note_survivors(marked: list[Stray], nodeid: str) -> None:
    """Remember after which test each live process with the token was first seen (named if it outlives the session)."""
    for process in marked:
        _first_seen.setdefault((process.pid, process.started), nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the test's teardown: fail it if it left orphans (killed here), and note what it left running."""
    try:
        return (yield)
    finally:
        if token := _token():
            marked = marked_processes(token)  # one scan of /proc per test (a few ms) when nothing leaked
            leaked = reap(token, orphans_only=True) if _orphans(marked) else []
            _note_survivors(marked_processes(token) if leaked else marked, item.nodeid)
            if leaked:
                lines = "\n  ".join(description for _, description in leaked)
                pytest.fail(
                    f"{item.nodeid} left processes running, no longer under pytest (killed now):\n  {lines}",
                    pytrace=False,
                )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every process with the token still alive when the session ends fails the run (and is killed)."""
    token = _token()
    if not token:
        return
    for process, description in reap(token, orphans_only=False):
        origin = _first_seen.get((process.pid, process.started), "a test or fixture")
        _session_leaks.append(f"{description} (first seen after {origin})")
    if _session_leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _session_leaks:
        terminalreporter.section("processes left running at the end of the session (killed)", red=True)
        for line in _session_leaks:
            terminalreporter.write_line(line)
