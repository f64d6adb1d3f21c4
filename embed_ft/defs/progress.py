"""Live progress of remote work, typed, from the assets that wait on it to whoever in this process listens.

An asset waiting on a remote job or deployment (`remote_jobs.progress_logger`) publishes a `RemoteProgress` on every
poll, beside the human line it logs for the Dagster UI. `embed-ft run` executes its run in-process, so its console
(`console.RunConsole`) subscribes for that run and reads the values as they are, without reading any log line. With
no subscriber (a run launched from the UI, `dg dev`) publishing does nothing.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

from dagster import DagsterError

ProgressKind = Literal["training", "evaluation", "deployment", "gateway"]


@dataclass(frozen=True)
class RemoteProgress:
    """Where one piece of remote work stands. ``name`` is the remote object (job id, ``namespace/name`` of a
    deployment, the model a gateway should list); ``status`` its status word (the job vocabulary of
    `nemo.status`, a deployment's status, ``listed``/``waiting`` for a gateway); ``percent`` None when the remote
    side reports none (Helix's retrieve-eval). The step fields are a training job's (``total_steps`` when the
    job states its plan, else the reader derives it from ``percent``); ``message`` the remote side's own text."""

    kind: ProgressKind
    name: str
    status: str
    percent: Optional[float] = None
    step: Optional[int] = None
    total_steps: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    loss: Optional[float] = None
    message: str = ""


ProgressListener = Callable[[str, RemoteProgress], None]  # called with the Dagster step key and the progress

_listeners: dict[int, tuple[Optional[str], ProgressListener]] = {}
_ids = itertools.count()
_lock = threading.Lock()


def subscribe(listener: ProgressListener, run_id: Optional[str] = None) -> Callable[[], None]:
    """Call ``listener(step_key, progress)`` for each progress published in this process by the run ``run_id``
    (every run when None). Returns the function that ends the subscription."""
    with _lock:
        token = next(_ids)
        _listeners[token] = (run_id, listener)

    def unsubscribe() -> None:
        with _lock:
            _listeners.pop(token, None)

    return unsubscribe


def publish(context: Any, progress: RemoteProgress) -> None:
    """Hand ``progress`` of the step running under ``context`` to this process's listeners (none: nothing). A
    listener that raises is logged as a warning: the step goes on."""
    with _lock:
        listeners = list(_listeners.values())
    if not listeners:
        return
    run_id, step = str(getattr(context, "run_id", "")), _step_key(context)
    for wanted_run, listener in listeners:
        if wanted_run is None or wanted_run == run_id:
            try:
                listener(step, progress)
            except Exception as exc:  # showing progress never fails the remote work it shows
                context.log.warning(f"A progress listener failed on {progress.kind} {progress.name}: {exc!r}")


def _step_key(context: Any) -> str:
    """The Dagster step key of ``context``; "" for a directly invoked asset (a test's `build_asset_context`)."""
    try:
        return str(context.get_step_execution_context().step.key)
    except DagsterError:
        return ""
