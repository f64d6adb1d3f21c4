"""The `embed-ft` command line: help, platform status, report (with and without history), and bad run config."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from dagster import AssetKey, DagsterInstance

from embed_ft.cli import main
from embed_ft.defs.data import specter_raw, specter_triplets
from embed_ft.defs.mining import mined_triplets
from embed_ft.defs.training import training_dataset
from embed_ft.defs.values import EvaluationResult
from embed_ft.history import latest_reports
from embed_ft.platform.settings import service_urls
from embed_ft.resources import resources_for_url

from .browser_helpers import write_dagster_yaml
from .lineage_fixtures import materialize_with_spec, write_specter_jsonl
from .platform_server import running_platform
from .report_fixtures import materialize_reports

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Empty DAGSTER_HOME and EMBED_FT_HOME of this test only (the CLI sets DAGSTER_HOME itself; monkeypatch
    undoes it)."""
    dagster_home = tmp_path / "dagster_home"
    write_dagster_yaml(dagster_home)
    platform_home = tmp_path / "platform_home"
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("EMBED_FT_HOME", str(platform_home))
    return dagster_home, platform_home


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def invoke_any(*args: str):
    """Like `invoke`, for commands whose exit code is the answer (SystemExit is not an error here)."""
    return CliRunner().invoke(main, list(args))


def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "ui", "report", "platform"):
        assert f"  {command} " in result.output
    platform_help = invoke("platform", "--help")
    assert platform_help.exit_code == 0
    for command in ("serve", "stop", "status"):
        assert f"  {command} " in platform_help.output


def test_platform_status_on_an_empty_home(homes):
    _, platform_home = homes
    result = invoke_any("platform", "status", "--json")
    assert result.exit_code == 1, result.output  # down: non-zero, for scripts
    status = json.loads(result.output)
    assert status["running"] is False
    assert status["healthy"] is False
    assert status["home"] == str(platform_home)
    human = invoke_any("platform", "status")
    assert human.exit_code == 1
    assert human.output.splitlines()[:2] == [
        "local platform: down",
        "start it with: embed-ft platform serve (foreground), or let embed-ft run start it",
    ]
    stopped = invoke("platform", "stop")
    assert stopped.exit_code == 0
    assert "no platform was running" in stopped.output


def test_report_without_any_materialization_says_how_to_create_one(homes):
    dagster_home, _ = homes
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code != 0
    assert "no evaluation_report yet in" in result.output
    assert str(dagster_home) in result.output
    assert "Create one with: embed-ft run" in result.output


def evaluation(model: str, ndcg: float, recall: float, queries: int = 40) -> EvaluationResult:
    """An upstream evaluation value as baseline_evaluation/fine_tuned_evaluation return it, with per-query nDCG@10
    scores around ``ndcg`` (mean exactly ``ndcg``) over ``queries`` SciFact queries."""
    offsets = [((i % 5) - 2) * 0.01 for i in range(queries)]
    per_query = {"scifact": {f"q{i}": {"ndcg_cut_10": ndcg + off} for i, off in enumerate(offsets)}}
    return EvaluationResult(
        model=model,
        job_id=f"eval-{model[-1]}",
        tasks={"scifact": "file://scifact/"},
        metrics={"scifact": {"ndcg_cut_10": ndcg, "recall_10": recall}},
        per_query=per_query,
        queries={"scifact": queries},
    )


@pytest.mark.slow  # 27 s on the shared machine (materializes report history)
def test_report_prints_the_latest_table_with_each_tasks_test_and_the_metric_history(homes):
    dagster_home, _ = homes
    baseline = evaluation("base-model-1", 0.6, 0.7)
    fine_tuned = {"exp-a": evaluation("tuned-model-1", 0.65, 0.72), "exp-b": evaluation("tuned-model-2", 0.7, 0.75)}
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        materialize_reports(instance, baseline, fine_tuned)
        run_ids = [
            r.run_id
            for r in instance.fetch_materializations(AssetKey("evaluation_report"), limit=10, ascending=True).records
        ]
        reports = latest_reports(instance)
    assert len(run_ids) == 2
    test = next(t for t in reports["exp-b"].tests if t.task == "scifact")

    result = invoke("report")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The latest report: when, which experiment and run, then the table of the second materialization with the
    # paired test of the primary metric beside it: queries, 95% interval of the difference, p-value, verdict.
    date = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
    assert re.fullmatch(rf"latest report: {date}, experiment exp-b, run {run_ids[1]}", lines[0])
    assert lines[1].split() == [
        "task",
        "metric",
        "baseline",
        "fine-tuned",
        "change",
        "queries",
        "95%",
        "CI",
        "of",
        "delta",
        "p",
        "verdict",
    ]
    assert lines[2].split() == [
        "scifact",
        "ndcg_cut_10",
        "0.6000",
        "0.7000",
        "+16.67%",
        "40",
        f"[{test.ci_low:+.4f},",
        f"{test.ci_high:+.4f}]",
        f"{test.p_value:.4f}",
        "significantly",
        "better",
    ]
    assert lines[3].split() == ["scifact", "recall_10", "0.7000", "0.7500", "+7.14%"]
    # The history: one line per materialization, oldest first, with date, experiment and the whole run id.
    history = [line for line in lines if line.startswith("- ")]
    assert len(history) == 2
    assert history[0].endswith(f"experiment exp-a  run {run_ids[0]}: scifact 0.6000 -> 0.6500 (+8.33%)")
    assert history[1].endswith(f"run {run_ids[1]}: scifact 0.6000 -> 0.7000 (+16.67%)")
    assert lines[-1] == f"history lives in {dagster_home}"
    recall = invoke("report", "--metric", "recall_10")
    assert f"run {run_ids[1]}: scifact 0.7000 -> 0.7500 (+7.14%)" in recall.output
    latest_only = invoke("report", "--latest")
    assert latest_only.exit_code == 0
    assert "\n- " not in latest_only.output
    assert "recall_10" in latest_only.output
    board = invoke("report", "--experiments")
    assert board.exit_code == 0, board.output
    table = [line.strip("| ").split(" | ") for line in board.output.splitlines() if line.startswith("| ")]
    # One row per experiment (the baseline's scores on top), best fine-tuned score first, built from the Reports.
    assert table[0] == ["experiment", "scifact (change, p)", "model", "date"]
    assert [row[0] for row in table[1:]] == ["(baseline)", "exp-b", "exp-a"]
    assert table[1][1] == "0.6000"
    assert table[2][1] == f"0.7000 (+16.67%, p {test.p_value:.4f})"
    assert table[2][2:] == ["tuned-model-2", reports["exp-b"].created_at]


def cli_env(dagster_home: Path, platform_home: Path, base_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(dagster_home),
        EMBED_FT_HOME=str(platform_home),
    )
    env.update(service_urls(base_url))  # NDS_URL, NEMO_URL and NIM_URL (the NIM routes have their own prefix)
    return env


@pytest.mark.slow  # 21-47 s per case on the shared machine
@pytest.mark.parametrize(
    "options, field",
    [
        (["--epochs", "0"], "epochs"),
        (["--experiment", "Not A Name"], "experiment"),
        (["--task", "scidocs"], "scidocs"),
    ],
)
def test_run_rejects_invalid_config_before_any_remote_call(tmp_path, options, field):
    """Bad run config fails naming the field, and the backend sees nothing: no dataset, no customization job."""
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    dagster_home = tmp_path / "dagster_home"
    write_dagster_yaml(dagster_home)
    with running_platform(tmp_path) as (base_url, settings):
        proc = subprocess.run(
            [sys.executable, "-m", "embed_ft.cli", "run", "--source", str(source), "--max-steps", "1", *options],
            env=cli_env(dagster_home, settings.home, base_url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr  # preflight failed
        problems = [line for line in proc.stdout.splitlines() if line.startswith("  config: ")]
        assert len(problems) in (1, 2), proc.stdout  # a task problem is named for both evaluations
        assert field in problems[0]
        assert " -> fix: " in problems[0]
        assert "Traceback" not in proc.stdout + proc.stderr
        jobs = requests.get(f"{base_url}/v1/customization/jobs", timeout=10).json()["data"]
        assert jobs == []
        datasets = requests.get(f"{base_url}/v1/datasets", timeout=10).json()["data"]
        assert datasets == [], "the training data was uploaded before the bad config was noticed"


def closed_loopback_url() -> str:
    """A loopback URL on which nothing listens (the port was just free; connecting to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_backend_fails_the_first_remote_asset_with_url_and_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBED_FT_DATA_ROOT", str(tmp_path / "data"))
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    base_url = closed_loopback_url()
    result = materialize_with_spec(
        [specter_raw, mined_triplets, specter_triplets, training_dataset],
        DagsterInstance.ephemeral(),
        {"data.source": str(source), "split.sample_size": 40, "split.test_size": 8, "split.validation_size": 0.15},
        resources=resources_for_url(base_url),
        raise_on_error=False,
    )
    assert not result.success
    # The local stages ran; the first asset that needs the backend is the one that failed.
    assert result.output_for_node("specter_triplets").rows["training"] > 0
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["training_dataset"]
    error = failures[0].event_specific_data.error
    # The asset turns the client's error into a dagster Failure: the UI shows this one line, no wrapped traceback.
    assert error.cls_name == "Failure"
    assert error.cause is None
    message = error.message
    assert base_url in message
    assert "Connection refused" in message
    # One clear line, not urllib3's retry chain.
    assert "Max retries exceeded" not in message
    assert "Traceback" not in message
    assert len(message.strip().splitlines()) == 1, message
