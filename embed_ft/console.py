"""What `embed-ft run` prints for people: one line per step as it starts and ends, live progress of remote work,
one line per failure (step, reason, fix) and what is still running (the results table is `defs/report_metadata.py`'s).

`RunConsole.handle` is a Dagster event-log listener (``instance.add_event_listener``) for the step events; the
progress of remote work comes typed (`defs/progress.py`: the console subscribes for its run while it is entered,
the assets publish `RemoteProgress` as they poll). On a terminal the progress line of the running step is rewritten
in place every second; otherwise progress is printed as plain lines, at most one per step every ``throttle_s``
seconds.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Optional, TextIO

from dagster import EventLogEntry

from .defs.progress import RemoteProgress, subscribe

PREFLIGHT_CHECK = "preflight_passed"
DEFAULT_FIX = "rerun with -v to see Dagster's event log"
FIXES = (
    ("Connection refused", "start the platform (embed-ft platform serve) or check NDS_URL/NEMO_URL/NIM_URL"),
    ("Invalid run config", "correct the option named above (embed-ft run --help)"),
    ("did not finish within", "raise the timeout in the run config, then run again: the remote job is reattached"),
    ("Hugging Face Hub cannot be reached", "use a local source: --preset scifact or --source PATH"),
)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def error_text(error: Any) -> str:
    """The innermost error's message, first line, without Dagster's wrapper or the exception's module path."""
    while getattr(error, "cause", None) is not None and "DagsterExecutionStepExecutionError" in str(error.cls_name):
        error = error.cause
    message = (getattr(error, "message", None) or str(error)).strip()
    message = re.sub(r"^[\w.]*?(Failure|Error|Exception)\w*: ", "", message)
    return message.splitlines()[0] if message else "unknown error"


def fix_for(reason: str) -> str:
    return next((fix for needle, fix in FIXES if needle in reason), DEFAULT_FIX)


def describe_progress(progress: RemoteProgress, elapsed_s: float) -> str:
    """A short progress text of a remote job or deployment; ``elapsed_s`` since its step started (for the ETA)."""
    if progress.kind == "training":
        return "training " + (", ".join(_training_parts(progress, elapsed_s)) or progress.status)
    if progress.kind == "evaluation":
        if progress.percent is not None:
            return f"evaluation {progress.message or progress.status} ({progress.percent:.0f}%)"
        # No percent (Helix's retrieve-eval reports none): the status and how long it has run.
        subject = f"{progress.message}: " if progress.message else ""
        return f"evaluation {subject}{progress.status}, {duration(elapsed_s)} elapsed"
    if progress.kind == "deployment":
        return f"deployment {progress.name}: {progress.status}" + (f" {progress.message}" if progress.message else "")
    return f"NIM gateway listing {progress.name}: {progress.status}"


def _training_parts(progress: RemoteProgress, elapsed_s: float) -> list[str]:
    """Step of total, epoch of epochs, loss, percent and ETA: whichever the job reports."""
    parts = []
    pct, step = progress.percent or None, progress.step
    if step is not None:
        total = progress.total_steps or (round(step * 100 / pct) if pct else None)
        parts.append(f"step {step}/{total or '?'}")
        per_epoch = progress.steps_per_epoch
        if per_epoch:
            epochs = max(1, round(total / per_epoch)) if total else None
            parts.append(f"epoch {min(step // per_epoch + 1, epochs or 10**9)}/{epochs or '?'}")
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.3f}")
    if pct:
        parts.append(f"{pct:.0f}%")
        if 0 < pct < 100:
            parts.append(f"ETA {duration(elapsed_s * (100 - pct) / pct)}")
    return parts


class RunConsole:
    """Turns a run's Dagster events into the lines a person reads (see the module docstring)."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: Optional[bool] = None,
        throttle_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        run_id: Optional[str] = None,
    ) -> None:
        """``run_id``: the run whose progress to show while entered (None: any run in this process)."""
        self.out = out
        self.run_id = run_id
        self.tty = out.isatty() if tty is None else tty
        self.throttle_s = throttle_s
        self.clock = clock
        self.started: dict[str, float] = {}
        self.progress: dict[str, str] = {}
        self.printed_progress_at: dict[str, float] = {}
        self.failures: list[str] = []
        self.skipped: list[str] = []
        self._lock = threading.Lock()
        self._live = ""
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None
        self._unsubscribe: Callable[[], None] = lambda: None

    # ---------------------------------------------------------------------------------------------- output

    def line(self, text: str) -> None:
        """A permanent line; on a terminal the live line is cleared first and redrawn under it."""
        with self._lock:
            if self.tty and self._live:
                self.out.write("\r\x1b[2K")
            self.out.write(text + "\n")
            self._live = self._live_text() if self.tty else ""
            self.out.write(self._live)
            self.out.flush()

    def _live_text(self) -> str:
        if not self.started:
            return ""
        step, t = list(self.started.items())[-1]
        progress = f"  {self.progress[step]}" if step in self.progress else ""
        return f"  ... {step} {duration(self.clock() - t)}{progress}"[:200]

    def _draw_live(self) -> None:
        with self._lock:
            text = self._live_text()
            if text or self._live:
                self.out.write("\r\x1b[2K" + text)
                self.out.flush()
            self._live = text

    def __enter__(self) -> "RunConsole":
        self._unsubscribe = subscribe(self.show_progress, self.run_id)
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="embed-ft-console", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw_live()

    def __exit__(self, *exc: Any) -> None:
        self._unsubscribe()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        with self._lock:
            if self.tty and self._live:
                self.out.write("\r\x1b[2K")
                self.out.flush()
            self._live = ""

    # ---------------------------------------------------------------------------------------------- events

    def step_started(self, step: str) -> None:
        self.line(f"start  {step}")
        with self._lock:
            self.started[step] = self.clock()

    def step_ended(self, step: str, ok: bool, reason: str = "") -> None:
        with self._lock:
            took = duration(self.clock() - self.started.pop(step, self.clock()))
            self.progress.pop(step, None)
        if ok:
            self.line(f"done   {step} ({took})")
        else:
            self.failure(step, reason, fix_for(reason), took)

    def failure(self, step: str, reason: str, fix: str, took: Optional[str] = None) -> None:
        text = (
            f"FAILED {step}" + (f" after {took}" if took else "") + f": {reason}" + (f" -> fix: {fix}" if fix else "")
        )
        self.failures.append(text)
        self.line(text)

    def show_progress(self, step: str, progress: RemoteProgress) -> None:
        """The subscriber of `defs/progress.py`: the step's progress line, redrawn or printed (throttled)."""
        text = describe_progress(progress, self.clock() - self.started.get(step, self.clock()))
        self.progress[step] = text
        if self.tty:
            self._draw_live()
            return
        now = self.clock()
        last = self.printed_progress_at.get(step)
        if last is None or now - last >= self.throttle_s:
            self.printed_progress_at[step] = now
            self.line(f"       {step}: {text}")

    def handle(self, entry: EventLogEntry) -> None:
        """Event-log listener: called by the Dagster instance for every event of the run."""
        event = entry.dagster_event
        if event is None:  # a log line: for the UI and --verbose; progress comes typed (`show_progress`)
            return
        kind, step = event.event_type_value, event.step_key or ""
        if kind == "STEP_START":
            self.step_started(step)
        elif kind == "STEP_SUCCESS":
            self.step_ended(step, True)
        elif kind == "STEP_FAILURE":
            self.step_ended(step, False, error_text(event.step_failure_data.error))
        elif kind == "STEP_SKIPPED":
            self.skipped.append(step)
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            if data.check_name == PREFLIGHT_CHECK and not data.passed:
                self.failure("preflight", data.description or "failed", "")  # each problem names its fix

    def summary(self, success: bool, run_seconds: float) -> None:
        if self.skipped:
            self.line(f"skipped {len(self.skipped)} step(s) after the failure: {', '.join(self.skipped)}")
        self.line(("run succeeded" if success else "run FAILED") + f" in {duration(run_seconds)}")
