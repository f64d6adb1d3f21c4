"""Remote NeMo work from inside an asset: waiting on it, and the reattach-or-submit rule of the two job assets.

A wait logs progress for people and publishes it typed (`progress.py`, read by `embed-ft run`'s console), fails the
asset with a clear message on timeout (the remote object is left running: a later materialization reattaches to it)
and, when the Dagster run is terminated, cancels the remote job first so that no GPU job keeps running orphaned.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from dagster import Backoff, DagsterExecutionInterruptedError, Failure, Jitter, RetryPolicy
from dagster._utils.interrupts import _received_interrupt

from ..nemo.polling import PollTimeout, poll
from ..nemo.status import COMPLETED, deployment_status, is_active, is_failed, is_ready, is_terminal, job_status
from .progress import RemoteProgress, publish

# The retry policy of the remote-job assets (training, the NIM deployments, the evaluations). A retry is safe: it
# finds its job again by the idempotency key (`reattach_or_submit`) or its deployment by name, so it waits on the
# same remote work instead of paying for it twice. Only transient failures are retried (a 5xx after the client's own
# retries, a lost connection: `common.backend_errors_as_failures`); a job that failed, a timeout, a bad config or a
# 4xx fail at once (`Failure(allow_retries=False)`). Waits of about 10 s, then 20 s, so a restarting service is back.
REMOTE_JOB_RETRY_POLICY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
TIMEOUT_HINT = "raise timeout_s in the run config and materialize again: the new run reattaches to it."
GONE = "gone"  # the status the deployment waits give a deployment that no longer exists
DEPLOYMENT_TIMEOUT_HINT = (
    "it holds a GPU: run teardown_deployments_job to remove it, or raise remote.deployment_timeout_s and "
    "materialize again (the new run waits on the same deployment)."
)
TERMINATED = "Run terminated: the step stopped (its remote job, if it had one, was cancelled) and is not retried."


def not_retried_when_terminated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For an asset under `REMOTE_JOB_RETRY_POLICY`: a terminated run (SIGTERM, Ctrl-C) fails the step for good.

    Dagster retries an interrupted step under a retry policy (meant for preempted workers); here the interruption is
    the user's, the remote job was just cancelled (`remote_wait`, `run_remote_job`), and a retry would submit it
    again. So the interruption becomes a `Failure` that bypasses the policy."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            # Why Dagster's private flag (read in dagster 1.13): re-raising the interruption instead would be retried,
            # since a step's user-code boundary turns it into a RetryRequested under the retry policy
            # (`_core/execution/plan/utils.py`). The Failure ends the step for good, but the in-process executor of
            # `embed-ft run` never polls for interruptions and goes on to the next step; it stops only at a step whose
            # boundary (`raise_interrupts_as`) finds this flag set, which only the SIGINT handler of the run's
            # `capture_interrupts` sets. No public API sets it (the exported `raise_execution_interrupts` only reads
            # it), and signalling ourselves would raise again inside this step. The run's end clears it.
            # Pinned by test_remote_retries::test_a_terminated_step_stops_the_run_and_the_next_run_is_not_interrupted.
            _received_interrupt["received"] = True
            raise Failure(TERMINATED, allow_retries=False) from None

    return wrapper


def progress_logger(
    context,
    what: str,
    describe: Callable[[Any], str],
    progress_of: Optional[Callable[[Any], RemoteProgress]] = None,
    log_every_s: float = 30.0,
) -> Callable[[Any], None]:
    """An ``on_update`` callback that logs ``describe(value)`` for people: the first one, then a changed one at most
    every ``log_every_s``; and publishes ``progress_of(value)`` on every update (`progress.publish`)."""
    last_logged = 0.0
    last_text = ""

    def on_update(value: Any) -> None:
        nonlocal last_logged, last_text
        if progress_of is not None:
            publish(context, progress_of(value))
        text = describe(value)
        now = time.monotonic()
        if not last_logged or (text != last_text and now - last_logged >= log_every_s):
            context.log.info(f"{what}: {text}")
            last_logged, last_text = now, text

    return on_update


@contextmanager
def remote_wait(
    context, what: str, timeout_s: float, cancel: Optional[Callable[[], Any]] = None, timeout_hint: str = TIMEOUT_HINT
) -> Iterator[None]:
    """Around a poll: a timeout becomes a `Failure` (not retried: the run asked for that limit); a terminated run
    cancels the remote job (when ``cancel``)."""
    try:
        yield
    except PollTimeout as exc:
        raise Failure(
            f"{what} did not finish within {timeout_s:.0f} s (last status: {exc.last_status}). "
            f"It is still active on the server and was not cancelled; {timeout_hint}",
            allow_retries=False,
        ) from None
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        if cancel is not None:
            context.log.warning(f"Run terminated: cancelling {what} so that it does not keep running.")
            try:
                cancel()
            except Exception as exc:  # the interruption must still propagate
                context.log.error(f"Could not cancel {what}: {exc}")
        raise


def wait_for_remote(
    context,
    *,
    what: str,
    fetch: Callable[[], dict],
    is_done: Callable[[dict], bool],
    status_of: Callable[[dict], str],
    timeout_s: float,
    interval_s: float,
    cancel: Optional[Callable[[], Any]] = None,
    describe: Optional[Callable[[dict], str]] = None,
    progress_of: Optional[Callable[[dict], RemoteProgress]] = None,
    timeout_hint: str = TIMEOUT_HINT,
) -> dict:
    """Poll ``fetch`` until ``is_done``; return the last document. Each document is logged (``describe``, else its
    status) and, with ``progress_of``, published typed."""
    with remote_wait(context, what, timeout_s, cancel, timeout_hint):
        return poll(
            fetch,
            is_done,
            timeout_s=timeout_s,
            interval_s=interval_s,
            what=what,
            on_update=progress_logger(
                context, what, describe or (lambda doc: f"status={status_of(doc)}"), progress_of=progress_of
            ),
            status_of=status_of,
            # Back off modestly: a long job is not polled every few seconds, a short one is not waited on for long.
            max_interval_s=4 * interval_s,
        )


def wait_for_removal(
    context, *, name: str, fetch: Callable[[], Optional[dict]], timeout_s: float, interval_s: float
) -> None:
    """Wait until the deleted deployment ``name`` (``namespace/name``) is gone (``fetch`` returns None)."""
    wait_for_remote(
        context,
        what=f"removal of deployment {name}",
        fetch=lambda: fetch() or {"status": GONE},
        is_done=lambda doc: deployment_status(doc) == GONE,
        status_of=deployment_status,
        timeout_s=timeout_s,
        interval_s=interval_s,
    )


def gateway_progress(model: str, listed: Any) -> RemoteProgress:
    """Whether the gateway's model list (``listed``: the names it serves) has ``model`` yet, typed."""
    return RemoteProgress("gateway", model, "listed" if model in listed else "waiting")


def wait_for_deployment(
    context,
    *,
    name: str,
    model: str,
    fetch: Callable[[], Optional[dict]],
    message_of: Callable[[dict], Optional[str]],
    no_message: str,
    timeout_s: float,
    interval_s: float,
) -> dict:
    """Wait until the deployment ``name`` (``namespace/name``) of ``model`` is ready, failed or gone (``fetch``
    returns None) and return it when ready; else fail, not retried, with its status message (``message_of``, or
    ``no_message`` when it has none). Both API generations: only where the message lives differs."""
    doc = wait_for_remote(
        context,
        what=f"deployment {name}",
        fetch=lambda: fetch() or {"status": GONE},
        is_done=lambda d: is_ready(d) or is_failed(d) or deployment_status(d) == GONE,
        status_of=deployment_status,
        # no cancel: a half-started NIM is torn down by the teardown job, not by a terminated run
        timeout_s=timeout_s,
        interval_s=interval_s,
        describe=lambda d: f"status={deployment_status(d)} {message_of(d) or ''}",
        progress_of=lambda d: RemoteProgress(
            "deployment", name, deployment_status(d), message=(message_of(d) or "").strip()
        ),
        timeout_hint=DEPLOYMENT_TIMEOUT_HINT,
    )
    if not is_ready(doc):
        raise Failure(
            f"Deployment {name} of {model} ended {deployment_status(doc)}: {message_of(doc) or no_message}. "
            "Run teardown_deployments_job to remove it.",
            allow_retries=False,
        )
    return doc


def reattach_or_submit(
    context, *, what: str, key: str, find: Callable[[str], Optional[dict]], submit: Callable[[], dict]
) -> dict:
    """The job for idempotency ``key``: the one found by ``find(key)`` when it is still active or completed (a retry
    or a second materialization waits on it instead of paying for the GPU again), else a new one from ``submit()``."""
    job = find(key)
    if job is not None and (is_active(job) or job_status(job) == COMPLETED):
        context.log.info(f"Reattaching to {what} {job['id']} ({job_status(job)}) for key {key[:12]}")
        return job
    if job is not None:
        context.log.info(f"Previous {what} {job['id']} for this input ended {job_status(job)}: submitting a new one.")
    return submit()


def run_remote_job(
    context,
    *,
    what: str,
    key: str,
    find: Callable[[str], Optional[dict]],
    submit: Callable[[], dict],
    fetch: Callable[[str], dict],
    cancel: Callable[[str], Any],
    timeout_s: float,
    interval_s: float,
    describe: Optional[Callable[[dict], str]] = None,
    progress_of: Optional[Callable[[str, dict], RemoteProgress]] = None,
) -> tuple[str, dict]:
    """Reattach to or submit the job for ``key`` (see `reattach_or_submit`), then wait until it ends (completed,
    failed or cancelled). ``fetch`` and ``cancel`` take the job id, ``progress_of`` the job id and its document.
    Returns the job id and its last document.

    A run terminated after the create was sent but before the wait began (the job id may be unknown: the answer
    was still on its way) cancels the job it finds by ``key``: the wait's own handler covers only the wait."""
    cancelled = []

    def cancel_once(job_id: str) -> Any:
        cancelled.append(job_id)
        return cancel(job_id)

    job_id: Optional[str] = None
    try:
        job_id = reattach_or_submit(context, what=what, key=key, find=find, submit=submit)["id"]
        doc = wait_for_remote(
            context,
            what=f"{what} {job_id}",
            fetch=lambda: fetch(job_id),
            is_done=is_terminal,
            status_of=job_status,
            cancel=lambda: cancel_once(job_id),
            timeout_s=timeout_s,
            interval_s=interval_s,
            describe=describe,
            progress_of=None if progress_of is None else functools.partial(progress_of, job_id),
        )
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        if not cancelled:
            _cancel_submitted(context, what, key, job_id, find, cancel)
        raise
    return job_id, doc


def require_completed(what: str, job_id: str, doc: dict, detail: Callable[[dict], str]) -> None:
    """Fail, not retried, unless the remote job ``job_id`` (a ``what``, e.g. ``"automodel job"``) completed, with
    the job's own text (``detail(doc)``): a retry would run the job again from scratch, and its error is the answer."""
    final = job_status(doc)
    if final != COMPLETED:
        raise Failure(
            f"{what[:1].upper()}{what[1:]} {job_id} ended {final}: {detail(doc)}",
            metadata={"job_id": job_id, "status": final},
            allow_retries=False,
        )


def _cancel_submitted(
    context,
    what: str,
    key: str,
    job_id: Optional[str],
    find: Callable[[str], Optional[dict]],
    cancel: Callable[[str], Any],
    attempts: int = 4,
    pause_s: float = 0.5,
) -> None:
    """Cancel the job a terminated run submitted before its wait began: ``job_id`` when its answer arrived, else
    the job found by ``key`` (looked up a few times: the create may still be in flight on the server)."""
    try:
        for attempt in range(attempts):
            job = {"id": job_id} if job_id else find(key)
            if job is not None:
                context.log.warning(f"Run terminated: cancelling {what} {job['id']} so that it does not keep running.")
                cancel(job["id"])
                return
            if attempt + 1 < attempts:
                time.sleep(pause_s)
    except Exception as exc:  # the interruption must still propagate
        context.log.error(f"Could not cancel {what} for key {key[:12]}: {exc}")
