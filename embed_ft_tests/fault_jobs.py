"""Fault injection into running jobs (tests only; see ``faults.py``): fail a customization or evaluation job
mid-run, or stall evaluation jobs at their next progress update.

It works through the progress hooks of the services' ``JobRunner``: at each progress point of a running job the
hook raises ``JobAborted(detail)`` when a failure is armed for it (its service fails the job with that detail,
exactly as when the worker crashes), or blocks while evaluations are stalled (a cancel or shutdown still ends
the job: the hook raises ``JobCancelled``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from embed_ft.nemo.status import TERMINAL_JOB_STATUSES
from embed_ft.platform.context import PlatformContext
from embed_ft.platform.services.errors import ConflictError, NotFoundError
from embed_ft.platform.services.jobs import JobAborted, JobCancelled, JobRunner

log = logging.getLogger("embed_ft.platform.faults")

MAX_DELAY_S = 600.0
MAX_WATCH_S = 900.0
WATCH_POLL_S = 0.05
JOB_KINDS = {"customization": "customization_job", "evaluation": "evaluation_job"}


class JobFailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["customization", "evaluation"]
    job_id: str | None = Field(None, description="The job to fail; empty: the next job of this kind that runs.")
    detail: str = Field("injected fault: the job's worker crashed", min_length=1, max_length=2000)
    after_s: float = Field(0.0, ge=0, le=MAX_DELAY_S, description="Seconds of running before it fails.")
    wait_s: float = Field(MAX_WATCH_S, gt=0, le=MAX_WATCH_S, description="Give up if no such job runs by then.")


@dataclass
class _ArmedFailure:
    spec: JobFailIn
    deadline: float
    running_since: dict[str, float] = field(default_factory=dict)


class JobFaults:
    """Armed job failures and the evaluation stall switch; ``record(action, what, **extra)`` logs each fault."""

    def __init__(self, record: Callable[..., None]) -> None:
        self.record = record
        self._lock = threading.Lock()
        self._armed: list[_ArmedFailure] = []
        self._stall = threading.Event()
        self._ctx: PlatformContext | None = None

    def attach(self, ctx: PlatformContext) -> None:
        """Hook into the job runners of a started platform."""
        self._ctx = ctx
        ctx.trainer.jobs.add_progress_hook(self._hook("customization"))
        ctx.evaluator.jobs.add_progress_hook(self._hook("evaluation"))

    def fail(self, spec: JobFailIn) -> dict[str, Any]:
        """Arm a failure of ``spec.job_id`` (or of the next job of ``spec.kind`` that runs)."""
        if spec.job_id is not None and self._ctx is not None:
            doc = self._ctx.store.get(JOB_KINDS[spec.kind], spec.job_id)
            if doc is None:
                raise NotFoundError(f"{spec.kind} job {spec.job_id!r} not found")
            if doc["status"] in TERMINAL_JOB_STATUSES:
                raise ConflictError(f"{spec.kind} job {spec.job_id} is already {doc['status']}")
        with self._lock:
            self._armed.append(_ArmedFailure(spec, time.monotonic() + spec.wait_s))
        return {"armed": True, "kind": spec.kind, "job_id": spec.job_id}

    def stall_evaluations(self, on: bool) -> None:
        if on:
            self._stall.set()
        else:
            self._stall.clear()

    def _hook(self, kind: str) -> Callable[[JobRunner, str], None]:
        def on_progress(runner: JobRunner, job_id: str) -> None:
            detail = self._take_failure(kind, job_id)
            if detail is not None:
                self.record("job_fail", f"{kind} job {job_id}", detail=detail)
                raise JobAborted(detail)
            if kind == "evaluation" and self._stall.is_set():
                self._hold(runner, job_id)

        return on_progress

    def _take_failure(self, kind: str, job_id: str) -> str | None:
        """The detail of the armed failure that fires for this job now (disarmed), if any."""
        now = time.monotonic()
        with self._lock:
            for armed in list(self._armed):
                spec = armed.spec
                if spec.kind != kind:
                    continue
                if now > armed.deadline:
                    self._armed.remove(armed)
                    log.warning("fault injection: no %s job ran within %.0f s; nothing failed", kind, spec.wait_s)
                    continue
                if spec.job_id not in (None, job_id):
                    continue
                if now - armed.running_since.setdefault(job_id, now) >= spec.after_s:
                    self._armed.remove(armed)
                    return spec.detail
        return None

    def _hold(self, runner: JobRunner, job_id: str) -> None:
        self.record("job_stall", f"evaluation job {job_id}")
        deadline = time.monotonic() + MAX_WATCH_S
        while self._stall.is_set() and time.monotonic() < deadline:
            if runner.should_stop(job_id):
                raise JobCancelled()
            time.sleep(WATCH_POLL_S)
