"""What `embed-ft run` prints: step lines with durations, progress parsed from the assets' log lines (in place on a
terminal, throttled otherwise), one line per failure, and the events of a real Dagster run turned into those lines."""

from __future__ import annotations

import io
import uuid

from dagster import DagsterInstance, Definitions, Failure, asset, define_asset_job

from embed_ft.console import RunConsole, describe_progress, duration
from embed_ft.defs.report_metadata import results_lines
from embed_ft.defs.values import PairedTest, ReportRow


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TRAINING_LINE = (
    "customization job cust-abc: status=running, 40%, step 30 (25 per epoch), train_loss=0.6620, val_loss=0.7000"
)
EVALUATION_LINE = "baseline evaluation job eval-1: status=running progress=42 scifact: embedded 1200/5183 documents"
DEPLOYMENT_LINE = "deployment embed-sft-ns/default-ft-nim: status=pending starting the model server"


def test_training_progress_has_step_total_epoch_loss_and_eta():
    text = describe_progress(TRAINING_LINE, elapsed_s=120.0)
    assert text == "training step 30/75, epoch 2/3, loss 0.662, 40%, ETA 3m00s"


def test_evaluation_and_deployment_progress():
    assert describe_progress(EVALUATION_LINE, 5.0) == "evaluation scifact: embedded 1200/5183 documents (42%)"
    assert describe_progress(DEPLOYMENT_LINE, 5.0) == (
        "deployment embed-sft-ns/default-ft-nim: pending starting the model server"
    )
    assert describe_progress("Requested deployment x of y", 5.0) is None


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
        console.progress_message("fine_tuned_model", TRAINING_LINE)
        clock.now += 10  # within the throttle: not printed
        console.progress_message("fine_tuned_model", TRAINING_LINE.replace("step 30", "step 31"))
        clock.now += 30
        console.progress_message("fine_tuned_model", TRAINING_LINE.replace("step 30", "step 33"))
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
        console.progress_message("fine_tuned_evaluation", EVALUATION_LINE)
        console.progress_message("fine_tuned_evaluation", EVALUATION_LINE.replace("1200/", "2400/"))
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
    context.log.info(DEPLOYMENT_LINE)
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
    with DagsterInstance.ephemeral() as instance, RunConsole(out, tty=False) as console:
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
