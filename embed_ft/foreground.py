"""Run a tree of local services in the foreground and stop all of it, whatever signal stops us.

``embed-ft ui`` runs ``dg dev``, which starts the Dagster webserver, the daemon and code servers. The tree runs
in a process group of its own; SIGINT (Ctrl-C), SIGTERM (a service manager, ``kill``) and SIGHUP (a closed
terminal) sent to this command are all forwarded to that group as SIGINT, the signal ``dg dev`` shuts its children
down on. Whatever of the group is still there ``STOP_GRACE_S`` after the first signal (``dg dev`` can hang in its
shutdown), or after ``dg dev`` exits on its own, is killed: the command is gone within ``STOP_GRACE_S`` of a signal.
Without this, SIGTERM ended the command and left ``dg dev`` and its children running with the port held. If this
command is killed outright (SIGKILL, the OOM killer), Linux sends ``dg dev`` SIGTERM (its parent-death signal),
which it shuts its children down on as on SIGINT; before, the whole tree was left running, re-parented to init.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

STOP_GRACE_S = 30.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PARENT_DEATH_SIGNAL = signal.SIGTERM
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_group(process: subprocess.Popen, grace_s: float | None = None) -> None:
    """Interrupt ``process``'s group, wait up to ``grace_s`` (default ``STOP_GRACE_S``) for all of it to exit, then
    kill what is left."""
    _signal_group(process.pid, signal.SIGINT)
    deadline = time.monotonic() + (STOP_GRACE_S if grace_s is None else grace_s)
    while time.monotonic() < deadline:
        if process.poll() is not None and not _group_alive(process.pid):
            return
        time.sleep(0.2)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _start(command: list[str], env: dict[str, str], cwd: Path | None) -> subprocess.Popen:
    """``command`` in a session of its own; on Linux it gets ``PARENT_DEATH_SIGNAL`` when this process dies."""
    if not sys.platform.startswith("linux"):
        return subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True)
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it before exec
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:  # it died before the call above
            os.kill(os.getpid(), PARENT_DEATH_SIGNAL)

    return subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True, preexec_fn=die_with_parent)


def _grace_left(stopping: list[float]) -> float:
    """What is left of ``STOP_GRACE_S`` since the first signal (all of it when none came)."""
    return STOP_GRACE_S if not stopping else max(0.0, STOP_GRACE_S - (time.monotonic() - stopping[0]))


def run_foreground(command: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
    """Run ``command`` (and everything it starts) until it exits or we are signalled; its exit status."""
    process = _start(command, env, cwd)
    stopping: list[float] = []  # when each forwarded signal came

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.append(time.monotonic())
        _signal_group(process.pid, signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = _wait_bounded(process, stopping)
    finally:
        stop_group(process, _grace_left(stopping))  # what dg dev left; at once if all of it is gone
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping and code in (0, -signal.SIGINT, 128 + signal.SIGINT) else code


def _wait_bounded(process: subprocess.Popen, stopping: list[float]) -> int:
    """``process``'s exit status; once we were signalled, at most ``STOP_GRACE_S`` more (``dg dev`` can hang in its
    shutdown, e.g. while a code server is still loading on a busy machine; a service manager expects us gone)."""
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stopping and time.monotonic() - stopping[0] > STOP_GRACE_S:
                return -signal.SIGINT
