"""What `embed-ft run` prints: step lines with durations, the typed progress the assets publish (in place on a
terminal, throttled otherwise), one line per failure, and the events and progress of a real Dagster run turned into
those lines."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace

import pytest
from dagster import DagsterInstance, Definitions, Failure, asset, build_asset_context, define_asset_job

from embed_ft.console import RunConsole, describe_progress, duration
from embed_ft.defs.progress import RemoteProgress, publish, subscribe
from embed_ft.defs.report_metadata import results_lines
from embed_ft.defs.values import PairedTest, ReportRow

from .fault_scenarios import TRAINING_ASSETS, failure_text, make_resources, materialize_assets, run_config
from .lineage_fixtures import write_specter_jsonl
from .platform_server import hub_online, running_platform  # noqa: F401  (fixture)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TRAINING = RemoteProgress(
    "training", "cust-abc", "running", percent=40.0, step=30, steps_per_epoch=25, loss=0.662, message="epoch 2"
)
EVALUATION = RemoteProgress(
    "evaluation", "eval-1", "running", percent=42.0, message="scifact: embedded 1200/5183 documents"
)
DEPLOYMENT = RemoteProgress("deployment", "embed-sft-ns/default-ft-nim", "pending", message="starting the model server")


def test_training_progress_has_step_total_epoch_loss_and_eta():
    text = describe_progress(TRAINING, elapsed_s=120.0)
    assert text == "training step 30/75, epoch 2/3, loss 0.662, 40%, ETA 3m00s"
    # A job that states its plan (the v2 automodel job's max_steps) is read as stated, not derived from the percent.
    planned = replace(TRAINING, total_steps=100, percent=30.0, steps_per_epoch=50)
    assert describe_progress(planned, 60.0) == "training step 30/100, epoch 1/2, loss 0.662, 30%, ETA 2m20s"
    # Before the first step: the status word alone.
    assert describe_progress(RemoteProgress("training", "j", "pending"), 1.0) == "training pending"


def test_evaluation_deployment_and_gateway_progress():
    assert describe_progress(EVALUATION, 5.0) == "evaluation scifact: embedded 1200/5183 documents (42%)"
    assert describe_progress(DEPLOYMENT, 5.0) == (
        "deployment embed-sft-ns/default-ft-nim: pending starting the model server"
    )
    assert describe_progress(RemoteProgress("gateway", "ns/m", "waiting"), 5.0) == "NIM gateway listing ns/m: waiting"


def test_an_evaluation_without_a_percent_shows_its_status_and_how_long_it_has_run():
    """Helix's retrieve-eval reports no percent: the task, the status and the elapsed time instead."""
    helix = RemoteProgress("evaluation", "embed-ft-eval-0f0f", "running", message="scifact")
    assert describe_progress(helix, 65.0) == "evaluation scifact: running, 1m05s elapsed"


def test_the_console_receives_only_its_own_runs_progress_and_only_while_entered():
    context = build_asset_context()  # a directly invoked asset: run id "EPHEMERAL", no step key
    out, other_out = io.StringIO(), io.StringIO()
    seen: list[tuple[str, RemoteProgress]] = []
    stop = subscribe(lambda step, progress: seen.append((step, progress)))
    try:
        console = RunConsole(out, tty=False, run_id=context.run_id)
        publish(context, TRAINING)  # before __enter__: not subscribed yet
        with console, RunConsole(other_out, tty=False, run_id="another-run"):
            publish(context, DEPLOYMENT)
        publish(context, TRAINING)  # after __exit__: unsubscribed
    finally:
        stop()
    assert out.getvalue().splitlines() == [
        "       : deployment embed-sft-ns/default-ft-nim: pending starting the model server"
    ]
    assert other_out.getvalue() == ""
    assert seen == [("", TRAINING), ("", DEPLOYMENT), ("", TRAINING)]


def test_a_failing_listener_does_not_fail_the_step_that_publishes():
    def broken(step: str, progress: RemoteProgress) -> None:
        raise OSError("stdout closed")

    seen: list[RemoteProgress] = []
    stops = [subscribe(broken), subscribe(lambda step, progress: seen.append(progress))]
    try:
        publish(build_asset_context(), TRAINING)  # does not raise
    finally:
        for stop in stops:
            stop()
    assert seen == [TRAINING]  # the other listeners still get it


def test_durations_read_like_a_person_writes_them():
    assert duration(3.21) == "3.2 s"
    assert duration(125) == "2m05s"
    assert duration(3 * 3600 + 120) == "3h02m"


def test_lines_mode_prints_start_end_and_throttled_progress():
    out, clock = io.StringIO(), FakeClock()
    console = RunConsole(out, tty=False, throttle_s=30.0, clock=clock)
    with console:
        console.step_started("fine_tuned_model")
        clock.now += 60
        console.show_progress("fine_tuned_model", TRAINING)
        clock.now += 10  # within the throttle: not printed
        console.show_progress("fine_tuned_model", replace(TRAINING, step=31))
        clock.now += 30
        console.show_progress("fine_tuned_model", replace(TRAINING, step=33))
        clock.now += 5
        console.step_ended("fine_tuned_model", ok=True)
        console.step_started("baseline_nim")
        clock.now += 1.5
        console.step_ended("baseline_nim", ok=False, reason="Connection refused by http://127.0.0.1:1")
    lines = out.getvalue().splitlines()
    assert lines[0] == "start  fine_tuned_model"
    assert lines[1].startswith("       fine_tuned_model: training step 30/75, epoch 2/3")
    assert lines[2].startswith("       fine_tuned_model: training step 33/")
    assert lines[3] == "done   fine_tuned_model (1m45s)"
    assert lines[4] == "start  baseline_nim"
    assert lines[5].startswith("FAILED baseline_nim after 1.5 s: Connection refused by http://127.0.0.1:1 -> fix: ")
    assert len(lines) == 6
    assert "\r" not in out.getvalue()


def test_terminal_mode_rewrites_the_progress_line_in_place():
    out, clock = io.StringIO(), FakeClock()
    with RunConsole(out, tty=True, clock=clock) as console:
        console.step_started("fine_tuned_evaluation")
        clock.now += 2
        console.show_progress("fine_tuned_evaluation", EVALUATION)
        console.show_progress(
            "fine_tuned_evaluation", replace(EVALUATION, message="scifact: embedded 2400/5183 documents")
        )
        console.step_ended("fine_tuned_evaluation", ok=True)
    text = out.getvalue()
    assert "\r\x1b[2K  ... fine_tuned_evaluation 2.0 s  evaluation scifact: embedded 1200/5183 documents" in text
    assert "embedded 2400/5183" in text
    # Permanent lines are the step's start and end; the progress line was cleared before the end line.
    permanent = [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]
    assert permanent[0] == "start  fine_tuned_evaluation"
    assert permanent[-1] == "\x1b[2Kdone   fine_tuned_evaluation (2.0 s)"


def test_results_table_puts_the_primary_metric_first():
    rows = [
        ReportRow("scifact", "recall_10", 0.78, 0.83, 0.05, 0.05 / 0.78),
        ReportRow("scifact", "ndcg_cut_10", 0.6451, 0.7099, 0.0648, 0.1005),
    ]
    lines = results_lines(rows)
    assert lines[0].split() == ["task", "metric", "baseline", "fine-tuned", "change"]
    assert lines[1].split() == ["scifact", "ndcg_cut_10", "0.6451", "0.7099", "+10.05%"]
    assert lines[2].split()[1] == "recall_10"
    # With the paired test of the task's primary metric: queries, 95% interval, p-value and verdict beside it.
    test = PairedTest("scifact", "ndcg_cut_10", 300, 0.0648, 0.041, 0.089, 0.0002, "significantly better", "")
    tested = results_lines(rows, [test])
    assert tested[1].split() == [
        "scifact",
        "ndcg_cut_10",
        "0.6451",
        "0.7099",
        "+10.05%",
        "300",
        "[+0.0410,",
        "+0.0890]",
        "0.0002",
        "significantly",
        "better",
    ]
    assert tested[2].split() == ["scifact", "recall_10", "0.7800", "0.8300", "+6.41%"]


@asset
def first_step(context) -> int:
    context.log.info("deployment embed-sft-ns/default-ft-nim: status=pending starting the model server")  # UI only
    publish(context, DEPLOYMENT)
    return 1


@asset
def failing_step(context, first_step: int) -> int:
    raise Failure("the source ../nowhere does not exist")


@asset
def after_failure(failing_step: int) -> int:
    return failing_step


def test_events_of_a_real_dagster_run_become_step_lines():
    out = io.StringIO()
    run_id = str(uuid.uuid4())
    with DagsterInstance.ephemeral() as instance, RunConsole(out, tty=False, run_id=run_id) as console:
        instance.add_event_listener(run_id, console.handle)
        job = Definitions(
            assets=[first_step, failing_step, after_failure], jobs=[define_asset_job("three_steps")]
        ).resolve_job_def("three_steps")
        result = job.execute_in_process(
            instance=instance,
            run_id=run_id,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
        console.summary(result.success, 3.0)
    lines = out.getvalue().splitlines()
    assert lines[0] == "start  first_step"
    assert lines[1] == "       first_step: deployment embed-sft-ns/default-ft-nim: pending starting the model server"
    assert lines[2].startswith("done   first_step (")
    assert lines[3] == "start  failing_step"
    assert lines[4].startswith("FAILED failing_step after ")
    assert lines[4].endswith(": the source ../nowhere does not exist -> fix: rerun with -v to see Dagster's event log")
    # Dagster does not start a step whose upstream failed (no event for it): nothing more is printed.
    assert lines[5:] == ["run FAILED in 3.0 s"]
    assert "Traceback" not in out.getvalue()


@pytest.mark.slow  # a real (tiny) training job on the embedded platform
def test_a_real_training_step_delivers_typed_progress_to_the_console(tmp_path, hub_online):
    """The in-process run of `fine_tuned_model` against the embedded platform: the console, subscribed for any run,
    gets the Customizer job's progress as `RemoteProgress` (step, percent) and prints the step's progress line."""
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    config = run_config(source, tmp_path / "data", experiment="progress", max_steps=2, poll_s=0.2)
    seen: list[tuple[str, RemoteProgress]] = []
    out = io.StringIO()
    with running_platform(tmp_path) as (url, _settings), RunConsole(out, tty=False, throttle_s=0.0):
        stop = subscribe(lambda step, progress: seen.append((step, progress)))
        try:
            result = materialize_assets(TRAINING_ASSETS, make_resources(url), config, DagsterInstance.ephemeral())
        finally:
            stop()
        assert result.success, failure_text(result)
    job_id = result.output_for_node("fine_tuned_model").job_id
    training = [progress for step, progress in seen if step == "fine_tuned_model"]
    assert training, seen
    assert all(p.kind == "training" and p.name == job_id for p in training)
    assert (training[-1].status, training[-1].percent) == ("completed", 100.0)
    assert any(p.step is not None and p.percent is not None for p in training), training
    assert any(line.startswith("       fine_tuned_model: training step ") for line in out.getvalue().splitlines())
