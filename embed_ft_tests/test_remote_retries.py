"""The remote-job assets retry transient failures through Dagster's `RetryPolicy`, and a retry reattaches to the
remote job (found by its idempotency key) instead of submitting another; permanent failures are not retried."""

from __future__ import annotations

import pytest
from dagster import (
    AssetKey,
    DagsterExecutionInterruptedError,
    DagsterInstance,
    Failure,
    RetryPolicy,
    asset,
    materialize,
)

from embed_ft.definitions import defs
from embed_ft.defs.common import backend_errors_as_failures
from embed_ft.defs.remote_jobs import REMOTE_JOB_RETRY_POLICY, TERMINATED, not_retried_when_terminated
from embed_ft.nemo.errors import NemoConnectionError, NotFound, ServerError

from .fault_scenarios import (
    TRAINING_ASSETS,
    FaultControl,
    failure_text,
    jobs,
    make_resources,
    materialize_assets,
    run_config,
    run_logs,
)
from .lineage_fixtures import write_specter_jsonl
from .platform_server import hub_online, running_platform  # noqa: F401  (fixture)

REMOTE_JOB_ASSETS = [
    "fine_tuned_model",
    "baseline_nim",
    "fine_tuned_nim",
    "baseline_evaluation",
    "fine_tuned_evaluation",
]
# The poll tolerates 5 consecutive transient errors, each one a call the client already tried 4 times (3 retries):
# the 6th failing call is the one that ends the wait. 24 answers of 503 are exactly that.
STATUS_FAILURES_THAT_END_A_WAIT = 6 * 4


def step_events(result, kind: str, step: str) -> list:
    return [e for e in result.all_events if e.event_type_value == kind and e.step_key == step]


def test_every_remote_job_asset_has_the_retry_policy():
    for name in REMOTE_JOB_ASSETS:
        node = defs.resolve_assets_def(AssetKey(name)).op
        assert node.retry_policy == REMOTE_JOB_RETRY_POLICY, name
    assert REMOTE_JOB_RETRY_POLICY.max_retries >= 1


@pytest.mark.parametrize(
    "error, retried",
    [
        (ServerError("customizer", "GET /v1/customization/jobs/x/status", 503, "busy"), True),
        (NemoConnectionError("customizer", "GET /x", "http://127.0.0.1:9/x", "reset", request_sent=True), True),
        (NotFound("customizer", "GET /v1/customization/jobs/x", 404, "no such job"), False),
    ],
)
def test_only_transient_backend_errors_are_retried(error, retried):
    calls = []

    @asset(retry_policy=RetryPolicy(max_retries=1))  # no delay: the policy's delay is not what is tested here
    @backend_errors_as_failures
    def remote_thing() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return 1

    result = materialize([remote_thing], instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success is retried
    assert len(calls) == (2 if retried else 1)
    assert len(step_events(result, "STEP_UP_FOR_RETRY", "remote_thing")) == (1 if retried else 0)


def test_a_failed_remote_job_is_not_retried():
    calls = []

    @asset(retry_policy=RetryPolicy(max_retries=2))
    def remote_thing() -> None:
        calls.append(1)
        raise Failure("Customization job cust-1 ended failed: out of memory", allow_retries=False)

    result = materialize([remote_thing], instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    assert calls == [1]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, DagsterExecutionInterruptedError])
def test_a_terminated_run_is_not_retried(interrupt):
    """Dagster retries an interrupted step under a retry policy; a remote-job step, whose job the interruption just
    cancelled, fails for good instead (a retry would submit the job again)."""
    calls = []

    @asset(retry_policy=RetryPolicy(max_retries=2))
    @backend_errors_as_failures
    @not_retried_when_terminated
    def remote_thing() -> None:
        calls.append(1)
        raise interrupt()

    result = materialize([remote_thing], instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    assert calls == [1]
    assert step_events(result, "STEP_UP_FOR_RETRY", "remote_thing") == []
    failure = step_events(result, "STEP_FAILURE", "remote_thing")[0]
    assert TERMINATED in failure.event_specific_data.error.to_string()


def test_dagster_retries_an_interruption_under_a_retry_policy():
    """The premise of `not_retried_when_terminated` turning the interruption into a Failure (and of its private
    interrupt flag): re-raised as it is, Dagster retries it. If an upgrade stops doing so, re-raising may do."""
    calls = []

    @asset(retry_policy=RetryPolicy(max_retries=1))
    def interrupted_thing() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt()

    result = materialize([interrupted_thing], instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert calls == [1, 1]
    assert len(step_events(result, "STEP_UP_FOR_RETRY", "interrupted_thing")) == 1


def test_a_terminated_step_stops_the_run_and_the_next_run_is_not_interrupted():
    """Ctrl-C on `embed-ft run` (the in-process executor): the interrupted remote-job step fails for good and the run
    stops there; before, the interruption became an ordinary failure and the run went on to the next step (a second
    Ctrl-C was needed). The interruption does not outlive its run: the next run in the process completes."""
    started = []

    @asset(retry_policy=RetryPolicy(max_retries=2))
    @not_retried_when_terminated
    def interrupted_thing() -> None:
        started.append("interrupted_thing")
        raise KeyboardInterrupt()

    @asset
    def unrelated_thing() -> None:  # no dependency: the executor would run it after the failure
        started.append("unrelated_thing")

    result = materialize(
        [interrupted_thing, unrelated_thing], instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    assert started == ["interrupted_thing"]
    assert materialize([unrelated_thing], instance=DagsterInstance.ephemeral()).success
    assert started == ["interrupted_thing", "unrelated_thing"]


def test_every_remote_job_asset_stops_for_good_when_terminated():
    for name in REMOTE_JOB_ASSETS:
        compute = defs.resolve_assets_def(AssetKey(name)).op.compute_fn.decorated_fn
        chain = []
        while compute is not None:
            chain.append(compute.__code__.co_qualname)
            compute = getattr(compute, "__wrapped__", None)
        assert any(q.startswith("not_retried_when_terminated") for q in chain), (name, chain)


@pytest.mark.slow
def test_a_transient_failure_during_training_is_retried_and_reattaches_to_the_job(tmp_path, hub_online):
    """The Customizer's status route answers 503 until the wait gives up (the clients' retries and the poll's
    tolerance both used up): Dagster retries the step, which finds the job by its key and waits on it. One job,
    one model, the run succeeds, nobody had to materialize again."""
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    config = run_config(source, tmp_path / "data", experiment="retried", max_steps=2, select=TRAINING_ASSETS)
    with running_platform(tmp_path, enable_faults=True) as (url, _settings):
        faults = FaultControl(url)
        faults.arm(
            "status", "/v1/customization/jobs/[^/]+/status", "GET", status=503, times=STATUS_FAILURES_THAT_END_A_WAIT
        )
        instance = DagsterInstance.ephemeral()
        result = materialize_assets(TRAINING_ASSETS, make_resources(url), config, instance)
        assert result.success, failure_text(result)

        retries = step_events(result, "STEP_UP_FOR_RETRY", "fine_tuned_model")
        assert len(retries) == 1
        assert "HTTP 503" in retries[0].event_specific_data.error.to_string()
        assert faults.summary()["injected"] == STATUS_FAILURES_THAT_END_A_WAIT
        only_job = jobs(url)
        assert len(only_job) == 1
        assert only_job[0]["status"] == "completed"
        assert result.output_for_node("fine_tuned_model").job_id == only_job[0]["id"]
        assert f"Reattaching to customization job {only_job[0]['id']}" in run_logs(instance, result.run_id)
