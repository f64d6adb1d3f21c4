"""Exclusive locks on files of a platform home (``fcntl.flock``): the one definition the launcher and the server use.

``<home>/platform.lock`` serialises launchers that start a platform (held for seconds); ``<home>/serve.lock`` is
held by the serving process for its whole life, so that a second ``serve`` on the same home refuses to start
instead of marking the first one's jobs failed. The serving process writes its pid into ``serve.lock``.
The kernel drops a flock when its process dies (also by SIGKILL): a crashed server never leaves its home locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

SERVE_LOCK_FILE = "serve.lock"


class LockHeld(RuntimeError):
    """Another process holds the lock; ``owner`` is what it wrote into the lock file (its pid), if anything."""

    def __init__(self, path: Path, owner: str) -> None:
        super().__init__(f"another process{f' (pid {owner})' if owner else ''} holds {path}")
        self.path = path
        self.owner = owner


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False


@contextmanager
def file_lock(path: Path, timeout_s: float = 0.0, record_pid: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block; wait up to ``timeout_s`` for it, then ``LockHeld``.
    ``record_pid``: write this process's pid into the file while it holds the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while not _try_lock(handle):
            if time.monotonic() >= deadline:
                handle.seek(0)
                raise LockHeld(path, handle.read().strip()[:20])
            time.sleep(0.1)
        try:
            if record_pid:
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()))
                handle.flush()
            yield
        finally:
            if record_pid:
                handle.truncate(0)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# The serve locks this process holds (home -> count): the server takes its home's lock before it binds, and the app
# it runs takes it again when it opens its state; one process may nest them, another may not.
_held: dict[Path, int] = {}
_held_guard = threading.Lock()


@contextmanager
def serve_lock(home: Path) -> Iterator[None]:
    """The lifetime lock of the platform serving ``home`` (re-entrant within this process); ``LockHeld`` at once
    when another process serves it."""
    home = Path(home).resolve()
    with _held_guard:
        if _held.get(home):
            _held[home] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[home] -= 1
        return
    with file_lock(home / SERVE_LOCK_FILE, record_pid=True):
        with _held_guard:
            _held[home] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(home, None)


def flock_holders(path: Path) -> set[int] | None:
    """The pids that hold a ``flock`` on ``path`` now (from ``/proc/locks``); None where the system does not say
    (no ``/proc``). A pid read from a file may be stale (the kernel reuses pids); this is not."""
    try:
        info = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except FileNotFoundError:
        return set() if Path("/proc/locks").exists() else None
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = set()
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 4242 08:01:123456 0 EOF"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted and fields[4].isdigit():
            holders.add(int(fields[4]))
    return holders
