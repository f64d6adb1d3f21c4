"""Helpers shared by the asset modules: idempotency keys, waiting on remote jobs, metadata formatting."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from typing import Any, Callable

from dagster import DagsterExecutionInterruptedError, Failure, MetadataValue

from ..nemo.errors import NemoError
from ..nemo.polling import PollTimeout, poll

TERMINAL_JOB_STATUSES = {"completed", "failed", "cancelled", "ready", "error"}
ACTIVE_JOB_STATUSES = {"created", "pending", "running", "cancelling", "unknown"}


def backend_errors_as_failures(fn: Callable) -> Callable:
    """Turn a NeMo client error (which already names the service, call, URL/status and server message, secrets
    redacted) into a Dagster ``Failure``: the UI then shows that one line instead of a wrapped stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NemoError as exc:
            raise Failure(str(exc)) from None

    return wrapper


def stable_hash(*parts: Any) -> str:
    """sha256 of a canonical JSON rendering: the same inputs give the same key on every machine."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def norm_status(value: Any) -> str:
    return str(value or "").strip().lower()


def wait_for_remote(
    context,
    *,
    what: str,
    fetch: Callable[[], dict],
    status_of: Callable[[dict], str],
    cancel: Callable[[], Any] | None,
    timeout_s: float,
    interval_s: float,
    describe: Callable[[dict], str] | None = None,
    terminal: set[str] = TERMINAL_JOB_STATUSES,
    log_every_s: float = 30.0,
    timeout_hint: str = "materialize again to reattach to it, or raise the timeout in the run config.",
) -> dict:
    """Poll a remote object until it reaches a terminal status.

    Logs progress at most every ``log_every_s``; on timeout fails saying the remote object is still active (it is
    not cancelled: a later materialization reattaches to it); when the Dagster run is terminated, cancels the
    remote job before re-raising, so no GPU job is left running orphaned.
    """
    last_logged = [0.0]
    last_text = [""]

    def on_update(doc: dict) -> None:
        text = describe(doc) if describe else f"status={status_of(doc)}"
        now = time.monotonic()
        if not last_logged[0] or (text != last_text[0] and now - last_logged[0] >= log_every_s):
            context.log.info(f"{what}: {text}")
            last_logged[0] = now
            last_text[0] = text

    try:
        return poll(
            fetch,
            lambda doc: status_of(doc) in terminal,
            timeout_s=timeout_s,
            interval_s=interval_s,
            what=what,
            on_update=on_update,
            status_of=status_of,
            # Back off modestly: a long job is not polled every few seconds, a short one is not waited on for long.
            max_interval_s=4 * interval_s,
        )
    except PollTimeout as exc:
        raise Failure(
            f"{what} did not finish within {timeout_s:.0f} s (last status: {exc.last_status}). "
            f"It is still active on the server and was not cancelled; {timeout_hint}"
        ) from None
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        if cancel is not None:
            context.log.warning(f"Run terminated: cancelling {what} so that it does not keep running.")
            try:
                cancel()
            except Exception as exc:  # the interruption must still propagate
                context.log.error(f"Could not cancel {what}: {exc}")
        raise


def invalid_run_config(job_def, run_config: dict) -> list[str]:
    """Every problem the pydantic validators of this run's op configs find, as `op.field: message`.

    Dagster checks the config schema at launch but runs a Config class's validators only when its step starts,
    i.e. after earlier assets have already called the backend; this runs them all up front.
    """
    import typing

    from dagster import Config
    from pydantic import ValidationError

    problems = []
    for op_name, entry in (run_config.get("ops") or {}).items():
        if not job_def.graph.has_node_named(op_name):
            continue
        compute_fn = getattr(job_def.graph.node_named(op_name).definition, "compute_fn", None)
        config_type = typing.get_type_hints(getattr(compute_fn, "decorated_fn", None) or (lambda: None)).get("config")
        if not (isinstance(config_type, type) and issubclass(config_type, Config)):
            continue
        try:
            config_type(**((entry or {}).get("config") or {}))
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(f"{op_name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
    return problems


def fail_on_invalid_run_config(context) -> None:
    """Called first by each asset that talks to the backend: a bad Launchpad config stops the run before any call."""
    problems = invalid_run_config(context.job_def, context.run_config)
    if problems:
        raise Failure("Invalid run config, nothing was sent to the backend: " + "; ".join(problems))


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def md(text: str) -> MetadataValue:
    return MetadataValue.md(text)
