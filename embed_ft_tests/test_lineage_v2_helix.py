"""The whole lineage on the v2 profile (NeMo Platform v2), through a real NeMo Platform server (`nemo-helix`, the
session fixture `helix`) and the embedded platform's v2 routes, as `embed-ft run --backend helix` runs it: the
training data and the held-out and BEIR sets uploaded to Helix filesets; fine-tuning as an automodel job and both
NIMs as v2 deployments of the embedded platform (which reads the training fileset from Helix's Files service);
each deployment a Helix model provider, embeddings through Helix's inference gateway, Helix's retrieve-eval jobs;
and the same report, asset graph and metadata keys as on v1 (`lineage_fixtures.lineage_metadata_keys`)."""

from __future__ import annotations

import io

import pytest
import requests
from dagster import DagsterInstance, materialize

from embed_ft.console import RunConsole
from embed_ft.definitions import lineage_assets
from embed_ft.defs.experiment_spec import stored_spec
from embed_ft.defs.progress import RemoteProgress, subscribe
from embed_ft.defs.teardown import teardown_deployments_job
from embed_ft.nemo.status import COMPLETED
from embed_ft.resources import resources_for_v2

from .lineage_fixtures import (
    TINY_TASK,
    assert_tiny_report,
    lineage_metadata_keys,
    materialize_experiment,
    materialized_metadata_keys,
    tiny_inputs,
    tiny_lineage_run_config,
)
from .platform_server import running_platform

# ~6 minutes on a quiet 2-core machine (a whole experiment: a training job, two deployments, 4 retrieve-eval job
# subprocesses); much longer with other work beside it, past the suite's 900 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

WORKSPACE = "embed-sft-ns"  # the v1 namespace is the v2 workspace
EXPERIMENT = "v2"


def listed(url: str, path: str) -> list[dict]:
    answer = requests.get(f"{url}{path}", params={"page_size": 100}, timeout=30)
    answer.raise_for_status()
    return answer.json()["data"]


def test_whole_lineage_on_the_v2_profile(tmp_path, helix, monkeypatch):
    inputs = tiny_inputs(tmp_path)
    monkeypatch.setenv("EMBED_FT_BEIR_ROOT", str(inputs.beir_root))  # file:// tasks are uploaded from here on v2
    with running_platform(tmp_path, beir_root=inputs.beir_root, v2_files_url=helix.url) as (local, _settings):
        resources = resources_for_v2(helix.url, local)
        instance = DagsterInstance.ephemeral()
        changes = tiny_lineage_run_config(str(inputs.source), TINY_TASK)
        published: list[tuple[str, RemoteProgress]] = []
        out = io.StringIO()
        stop = subscribe(lambda step, progress: published.append((step, progress)))
        try:
            with RunConsole(out, tty=False, throttle_s=0.0):  # what `embed-ft run --backend helix` shows
                run = materialize_experiment(instance, resources, changes, EXPERIMENT)
        finally:
            stop()
        assert run.success
        # Every remote wait published its progress typed, and the console showed it (`defs/progress.py`).
        kinds = {(step, progress.kind) for step, progress in published}
        assert {
            ("fine_tuned_model", "training"),
            ("baseline_nim", "deployment"),
            ("fine_tuned_nim", "deployment"),
            ("baseline_evaluation", "evaluation"),
            ("fine_tuned_evaluation", "evaluation"),
        } <= kinds, kinds
        shown = out.getvalue().splitlines()
        assert any(line.startswith("       fine_tuned_model: training ") for line in shown), shown
        assert any(line.startswith("       fine_tuned_evaluation: evaluation ") for line in shown), shown
        assert stored_spec(instance, EXPERIMENT).spec.profile == "local-v2"
        # Helix reports per-query scores (row-scores): the paired tests run, and 8 queries are too few for a claim.
        assert_tiny_report(run.output_for_node("evaluation_report"))
        # The same graph and metadata keys as the v1 lineage (test_lineage_e2e checks the same expectation).
        assert materialized_metadata_keys(run) == lineage_metadata_keys()

        # Helix holds the data, the providers and the evaluations.
        filesets = {fs["name"] for fs in listed(helix.url, f"/apis/files/v2/workspaces/{WORKSPACE}/filesets")}
        assert {"embed-sft-data", "embed-sft-heldout-beir", "beir-tinybeir"} <= filesets
        data = {
            f["path"] for f in listed(helix.url, f"/apis/files/v2/workspaces/{WORKSPACE}/filesets/embed-sft-data/files")
        }
        assert {"training/training.jsonl", "validation/validation.jsonl"} <= data
        providers = {p["name"]: p for p in listed(helix.url, f"/apis/models/v2/workspaces/{WORKSPACE}/providers")}
        assert {"embed-ft-baseline-nim", f"embed-ft-{EXPERIMENT}-ft-nim"} <= set(providers)
        assert all(p["host_url"].startswith(local) for p in providers.values())
        jobs = listed(helix.url, f"/apis/evals/v2/workspaces/{WORKSPACE}/retrieve-eval/jobs")
        evaluations = [job for job in jobs if job["name"].startswith("embed-ft-eval-")]
        assert len(evaluations) == 4  # baseline and fine-tuned, each on tinybeir and heldout
        assert {job["status"] for job in evaluations} == {COMPLETED}

        # The embedded platform trained and serves, behind its v2 routes.
        model = run.output_for_node("fine_tuned_model")
        trained = listed(local, f"/apis/customization/v2/workspaces/{WORKSPACE}/automodel/jobs")
        assert [job["name"] for job in trained] == [model.job_id]
        assert trained[0]["status"] == COMPLETED
        assert model.output_model == f"{WORKSPACE}/{trained[0]['spec']['output']['name']}"
        deployments = {d["name"]: d for d in listed(local, f"/apis/models/v2/workspaces/{WORKSPACE}/deployments")}
        assert set(deployments) == {"baseline-nim", f"{EXPERIMENT}-ft-nim"}
        assert {d["status"] for d in deployments.values()} == {"READY"}
        nim = run.output_for_node("fine_tuned_nim")
        assert nim.nim_url.startswith(f"{helix.url}/apis/inference-gateway/v2/")  # through Helix's gateway
        assert nim.served_name == model.output_model

        # A second materialization (no config: the stored spec) reattaches to the completed automodel job.
        again = materialize(
            lineage_assets,
            resources=resources,
            instance=instance,
            partition_key=EXPERIMENT,
            selection=["fine_tuned_model"],
        )
        assert again.success
        assert again.output_for_node("fine_tuned_model").job_id == model.job_id
        assert len(listed(local, f"/apis/customization/v2/workspaces/{WORKSPACE}/automodel/jobs")) == 1

        # A job the server refuses fails the asset at once with the server's own text, naming the field.
        bad = materialize_experiment(
            instance,
            resources,
            {**changes, "training.target": "nowhere/no-such-model@v1"},
            "v2-bad",
            selection=["fine_tuned_model"],
            raise_on_error=False,
        )
        assert not bad.success
        failures = [e.step_failure_data.error.message for e in bad.all_events if e.is_step_failure]
        assert any("spec.model" in text for text in failures), failures

        # Teardown deletes the v2 deployments.
        removed = teardown_deployments_job.execute_in_process(instance=instance, resources=resources)
        assert sorted(removed.output_for_node("delete_deployments")) == [
            f"{WORKSPACE}/baseline-nim",
            f"{WORKSPACE}/{EXPERIMENT}-ft-nim",
        ]
        assert listed(local, f"/apis/models/v2/workspaces/{WORKSPACE}/deployments") == []
