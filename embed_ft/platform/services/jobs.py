"""``JobRunner``: the job machinery the Customizer and the Evaluator share.

One runner serves one store kind (``customization_job``, ``evaluation_job``): a queue, one worker thread that runs
the queued jobs one at a time through the service's ``execute(job_id)``, cancel requests, the status writer
(status, status_details, status_logs: every status change of a job goes through ``set_status``), restart recovery
(jobs a dead process left active are marked failed) and progress hooks.

Progress hooks are how fault injection (the tests' ``embed_ft_tests/faults.py``) fails or stalls a running job: a
service calls
``check_progress(job_id)`` at each progress point, and a hook may raise ``JobAborted(detail)`` (the service fails
the job with that detail) or block.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from embed_ft.nemo.status import ACTIVE_JOB_STATUSES, FAILED, TERMINAL_JOB_STATUSES

from ..store import EntityStore, utc_now

log = logging.getLogger("embed_ft.platform.jobs")

QUEUE_POLL_S = 0.2
# Put on the queue by `stop` so the worker wakes at once instead of at its next poll (no job has an empty id).
_WAKE_UP = ""


class JobAborted(Exception):
    """Raised by a progress hook: the running job fails with this detail (an injected crash)."""


class JobCancelled(Exception):
    """Raised inside a running job when it should stop (cancel request or platform shutdown)."""


ProgressHook = Callable[["JobRunner", str], None]


def status_log_entry(message: str, detail: str | None = None, status: str | None = None) -> dict[str, Any]:
    """One ``status_logs`` entry. Evaluator logs name the status they record; Customizer logs name an event."""
    entry: dict[str, Any] = {"updated_at": utc_now()}
    if status is not None:
        entry["status"] = status
    entry.update(message=message, detail=detail)
    return entry


class JobRunner:
    """Runs the queued jobs of one kind one at a time in a worker thread; writes their status."""

    def __init__(self, store: EntityStore, kind: str, label: str, *, log_status: bool) -> None:
        self.store = store
        self.kind = kind
        self.label = label  # "customization job", "evaluation job": how messages name a job
        self.log_status = log_status  # status_logs entries carry the status (Evaluator) or not (Customizer)
        self.execute: Callable[[str], None] | None = None
        self.lock = threading.RLock()  # serialises status writes with cancel requests (re-entrant)
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._stopping = threading.Event()
        self._cancel_requested: set[str] = set()
        self._current: str | None = None
        self._progress_hooks: list[ProgressHook] = []
        self._thread = threading.Thread(target=self._loop, name=f"{kind}-runner", daemon=True)

    # ---- life cycle

    def start(self, execute: Callable[[str], None]) -> None:
        """Mark the jobs a dead process left active as failed, then start running queued jobs with ``execute``."""
        self.execute = execute
        recovered = self.recover_interrupted()
        if recovered:
            log.warning("marked %d interrupted %s(s) as failed after restart", recovered, self.label)
        self._thread.start()

    def recover_interrupted(self) -> int:
        """Mark every job of this kind that is still active in the store (its worker died with the old process)
        as failed, with a detail that says why."""
        active = {status.lower() for status in ACTIVE_JOB_STATUSES}
        count = 0

        def recover(job_id: str, doc: dict[str, Any]) -> None:
            nonlocal count
            if str(doc.get("status", "")).lower() not in active:
                return
            detail = (
                f"The platform process stopped while this job was {doc.get('status')}; "
                "the job was interrupted and will not resume. Submit it again."
            )
            self.set_status(job_id, FAILED, "PlatformRestarted", detail, details={"message": detail})
            count += 1

        self.store.each_row(self.kind, recover, f"restart recovery of {self.label}s")
        return count

    def stop(
        self,
        timeout_s: float,
        fail_abandoned: Callable[[str, dict[str, Any]], None],
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        """Stop the worker thread and fail every job that will never run here: the queued ones, and a running one
        its service did not finish. ``interrupt()`` (after ``stopping`` is set) ends the running job's work at
        once; ``fail_abandoned(job_id, doc)`` marks an abandoned job failed, in the service's words."""
        self._stopping.set()
        self._queue.put(_WAKE_UP)
        running = self._current
        if interrupt is not None:
            interrupt()
        self._thread.join(timeout_s)
        for job_id in self._drain_queue() + ([running] if running else []):
            with self.lock:
                doc = self.store.get(self.kind, job_id)
                if doc is not None and doc["status"] not in TERMINAL_JOB_STATUSES:  # a cancelled one stays cancelled
                    fail_abandoned(job_id, doc)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ---- queue and cancel

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    @property
    def current(self) -> str | None:
        """The job the worker runs now, if any."""
        return self._current

    def request_cancel(self, job_id: str) -> bool:
        """Record a cancel request; True when the job is the one running now (its service must stop it)."""
        with self.lock:
            self._cancel_requested.add(job_id)
            return self._current == job_id

    def cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancel_requested

    def should_stop(self, job_id: str) -> bool:
        """True when the running job must end: a cancel request, or the platform is stopping."""
        return self._stopping.is_set() or job_id in self._cancel_requested

    # ---- progress hooks

    def add_progress_hook(self, hook: ProgressHook) -> None:
        self._progress_hooks.append(hook)

    def check_progress(self, job_id: str) -> None:
        """Called by the service at each progress point of a running job; runs the hooks (which may raise)."""
        for hook in list(self._progress_hooks):
            hook(self, job_id)

    # ---- status

    def set_status(
        self,
        job_id: str,
        status: str,
        message: str,
        detail: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """The one status writer: set ``status``, merge ``details`` into status_details, append a status log."""
        with self.lock:
            doc = self.store.get(self.kind, job_id)
            if doc is None:
                return None
            entry = status_log_entry(message, detail, status if self.log_status else None)
            return self.store.update(
                self.kind,
                job_id,
                {
                    "status": status,
                    "status_details": {**(doc.get("status_details") or {}), **(details or {})},
                    "status_logs": [*(doc.get("status_logs") or []), entry],
                    **fields,
                },
            )

    def update_details(self, job_id: str, details: dict[str, Any], *, unless_cancelled: bool = False) -> None:
        """Merge ``details`` into a job's status_details (progress). ``unless_cancelled``: write nothing once a
        cancel was requested, so that its message stays."""
        with self.lock:
            doc = self.store.get(self.kind, job_id)
            if doc is None or (unless_cancelled and job_id in self._cancel_requested):
                return
            self.store.update(self.kind, job_id, {"status_details": {**(doc.get("status_details") or {}), **details}})

    # ---- the worker

    def _drain_queue(self) -> list[str]:
        drained: list[str] = []
        while True:
            try:
                job_id = self._queue.get_nowait()
            except queue.Empty:
                return drained
            if job_id != _WAKE_UP:
                drained.append(job_id)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._queue.get(timeout=QUEUE_POLL_S)
            except queue.Empty:
                continue
            if job_id == _WAKE_UP:
                continue
            with self.lock:
                if job_id in self._cancel_requested:  # cancelled while queued: its service already marked it
                    self._cancel_requested.discard(job_id)
                    continue
                self._current = job_id
            try:
                assert self.execute is not None
                self.execute(job_id)
            except Exception as exc:  # keep the worker alive for the next job
                log.exception("%s %s failed in the platform", self.label, job_id)
                self.set_status(
                    job_id,
                    FAILED,
                    "internal error",
                    f"internal error: {type(exc).__name__}: {exc}",
                    details={"message": f"internal error: {type(exc).__name__}: {exc}"},
                )
            finally:
                with self.lock:
                    self._current = None
                    self._cancel_requested.discard(job_id)
