"""Terminating a Dagster run while its v2 fine-tuning step waits cancels the remote automodel job (the v1
equivalent: `test_reliability_pipeline.test_failed_job_terminated_run_and_platform_restart`, step 2).

The real lineage's training assets on the v2 profile, in a separate process as a run launcher starts one: the splits
uploaded to Helix's Files service, the automodel job on the embedded platform's `/apis/customization/v2` routes (it
reads the fileset from Helix). The run gets SIGTERM while the job trains; the job must end cancelled."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import requests

from embed_ft.nemo.status import CANCELLED, is_active, is_terminal, job_status

from .fault_scenarios import (
    TRAINING_ASSETS,
    kill_process_group,
    run_config,
    start_materialize_process,
    wait_for,
)
from .lineage_fixtures import write_specter_jsonl
from .platform_server import running_platform

pytestmark = pytest.mark.slow  # Helix start-up, a Dagster run in its own process, a training worker

WORKSPACE = "embed-sft-ns"  # the v1 namespace is the v2 workspace
DATASET = "embed-sft-terminated"  # its own fileset in the session's Helix
CANCEL_WAIT_S = 60.0  # a cancelled job ends within seconds; without the cancel it would train on for hours


def automodel_jobs(local: str) -> list[dict]:
    answer = requests.get(
        f"{local}/apis/customization/v2/workspaces/{WORKSPACE}/automodel/jobs", params={"page_size": 100}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()["data"]


def test_terminating_the_run_cancels_its_automodel_job(tmp_path, helix):
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    # Long enough that only a cancel ends it while the test runs.
    config = run_config(source, tmp_path / "data", experiment="terminated-v2", max_steps=1_000_000)
    config["changes"].update({"training.epochs": 1000, "data.dataset_name": DATASET})
    with running_platform(tmp_path, v2_files_url=helix.url) as (local, _settings):
        args = {
            "base_url": local,
            "v2_platform_url": helix.url,
            "assets": TRAINING_ASSETS,
            "run_config": config,
            "dagster_home": str(tmp_path / "dagster_home"),
        }
        Path(args["dagster_home"]).mkdir()
        log = tmp_path / "run.log"
        run = start_materialize_process(tmp_path / "run.json", args, log)
        try:
            training = wait_for(
                lambda: next((j for j in automodel_jobs(local) if is_active(j)), None), "the automodel job to train"
            )
            run.send_signal(signal.SIGTERM)  # as a run launcher terminates a run
            assert run.wait(timeout=120) != 0
        finally:
            kill_process_group(run)
        ended = wait_for(
            lambda: next((j for j in automodel_jobs(local) if j["name"] == training["name"] and is_terminal(j)), None),
            "the terminated run's automodel job to end",
            timeout_s=CANCEL_WAIT_S,
        )
        assert job_status(ended) == CANCELLED
        assert [j["name"] for j in automodel_jobs(local)] == [training["name"]]  # one job, not resubmitted
        text = log.read_text()
        assert f"Run terminated: cancelling automodel job {training['name']}" in text
        assert "success=True" not in text
