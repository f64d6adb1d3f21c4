"""Polling remote state until it is terminal (the status vocabulary is `status.py`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import NemoConnectionError, ServerError
from .status import normalize_status

log = logging.getLogger("embed_ft.nemo")

T = TypeVar("T")


class PollTimeout(TimeoutError):
    """The remote state did not become terminal in time; the remote operation is probably still going."""

    def __init__(self, what: str, elapsed: float, last_status: str) -> None:
        self.what = what
        self.elapsed = elapsed
        self.last_status = last_status
        super().__init__(f"timed out after {elapsed:.0f} s waiting for {what}; last status: {last_status}")


def _default_status_of(value: Any) -> str:
    if isinstance(value, dict):
        details = value.get("status_details")
        if "status" not in value and isinstance(details, dict):
            return normalize_status(details.get("status"))
        return normalize_status(value.get("status"))
    return str(value)[:200]


def poll(
    fetch: Callable[[], T],
    is_terminal: Callable[[T], bool],
    timeout_s: float,
    interval_s: float = 5.0,
    *,
    what: str = "remote operation",
    on_update: Callable[[T], None] | None = None,
    max_interval_s: float = 60.0,
    backoff: float = 1.5,
    status_of: Callable[[T], str] = _default_status_of,
    transient_errors: tuple[type[BaseException], ...] = (NemoConnectionError, ServerError),
    max_transient_errors: int = 5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fetch`` until ``is_terminal(result)``; return that result.

    Sleeps ``interval_s`` between calls, growing by ``backoff`` up to ``max_interval_s`` (never past the
    deadline). ``on_update`` sees every fetched value. Up to ``max_transient_errors`` consecutive
    connection/5xx errors are tolerated (a gateway blip must not fail a 20-minute wait); the next one is
    raised. Raises :class:`PollTimeout` with the last status seen once ``timeout_s`` has passed.
    """
    if interval_s <= 0:
        raise ValueError(f"poll interval must be > 0 s (no busy-waiting), got {interval_s}")
    if timeout_s < 0:
        raise ValueError(f"poll timeout must be >= 0 s, got {timeout_s}")
    started = clock()
    interval = interval_s
    last: T | None = None
    last_status = "never fetched"
    consecutive_errors = 0
    while True:
        try:
            last = fetch()
        except transient_errors as exc:
            consecutive_errors += 1
            if consecutive_errors > max_transient_errors:
                raise
            log.warning(
                "%s: transient error %d/%d while polling: %s", what, consecutive_errors, max_transient_errors, exc
            )
        else:
            consecutive_errors = 0
            last_status = status_of(last)
            if on_update is not None:
                on_update(last)
            if is_terminal(last):
                return last
        elapsed = clock() - started
        if elapsed >= timeout_s:
            raise PollTimeout(what, elapsed, last_status)
        sleep(min(interval, timeout_s - elapsed))
        interval = min(interval * backoff, max_interval_s)
