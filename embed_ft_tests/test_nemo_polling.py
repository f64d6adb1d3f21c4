"""poll(): terminal detection, backoff, deadline, transient errors; status normalization."""

from __future__ import annotations

import pytest

from embed_ft.nemo import NemoConnectionError, PollTimeout, ServerError, is_terminal, normalize_status, poll


class FakeTime:
    """An injectable clock whose sleep advances it (no real waiting, no timing assertions)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _statuses(*values):
    it = iter(values)
    return lambda: {"status": next(it)}


def test_poll_returns_the_terminal_value_and_reports_every_update():
    time = FakeTime()
    seen = []
    last = poll(
        _statuses("created", "pending", "RUNNING", "Completed"),
        is_terminal,
        timeout_s=3600,
        interval_s=2,
        backoff=2,
        max_interval_s=5,
        on_update=lambda doc: seen.append(doc["status"]),
        clock=time.clock,
        sleep=time.sleep,
    )
    assert last == {"status": "Completed"}
    assert seen == ["created", "pending", "RUNNING", "Completed"]
    assert time.sleeps == [2, 4, 5]  # grows, capped


def test_poll_times_out_with_the_last_status_and_never_sleeps_past_the_deadline():
    time = FakeTime()
    with pytest.raises(PollTimeout) as info:
        poll(
            lambda: {"status": "running"},
            is_terminal,
            timeout_s=10,
            interval_s=4,
            backoff=1,
            what="customization job cust-1",
            clock=time.clock,
            sleep=time.sleep,
        )
    assert time.sleeps == [4, 4, 2]
    assert info.value.last_status == "running"
    assert info.value.elapsed == 10
    assert str(info.value) == "timed out after 10 s waiting for customization job cust-1; last status: running"


def test_poll_tolerates_a_few_transient_errors_then_raises():
    time = FakeTime()
    outcomes = [ServerError("Customizer", "GET /x", 503, "busy"), {"status": "completed"}]

    def fetch():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert poll(fetch, is_terminal, timeout_s=60, interval_s=1, clock=time.clock, sleep=time.sleep) == {
        "status": "completed"
    }

    def always_down():
        raise NemoConnectionError("Customizer", "GET /x", "http://nemo.test/x", "refused")

    with pytest.raises(NemoConnectionError):
        poll(
            always_down,
            is_terminal,
            timeout_s=600,
            interval_s=1,
            max_transient_errors=2,
            clock=time.clock,
            sleep=time.sleep,
        )


def test_poll_rejects_busy_waiting():
    with pytest.raises(ValueError, match="must be > 0"):
        poll(lambda: {}, is_terminal, timeout_s=1, interval_s=0)


def test_normalize_status():
    assert normalize_status("READY") == "ready"
    assert normalize_status(" Completed ") == "completed"
    assert normalize_status(None) == normalize_status("") == "unknown"
    assert is_terminal("CANCELLED")
    assert is_terminal({"status": "failed"})
    assert not is_terminal("running")
