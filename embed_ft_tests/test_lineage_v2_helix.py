"""The whole lineage with its evaluation on the v2 profile, through a real NeMo Platform server (`nemo-helix`, the
session fixture `helix`): held-out set and BEIR task uploaded to Helix filesets, the NIMs registered as Helix model
providers and model entities, embeddings through Helix's inference gateway, Helix's retrieve-eval jobs, and the same
evaluation report as on v1. Training and serving run on our local platform (Helix cannot run them on a CPU)."""

from __future__ import annotations

import pytest
import requests
from dagster import AssetKey, DagsterInstance, materialize

from embed_ft.definitions import lineage_assets
from embed_ft.nemo.status import COMPLETED
from embed_ft.resources import EvaluatorResource, resources_for_url

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

# ~5 minutes on a quiet 2-core machine (a whole experiment, 4 retrieve-eval job subprocesses); 16 minutes were seen
# with 8 engineers' work beside it, past the suite's 900 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

WORKSPACE = "embed-sft-ns"  # the namespace of the v1 objects is the v2 workspace


def helix_list(url: str, path: str) -> list[dict]:
    return requests.get(f"{url}{path}", params={"page_size": 100}, timeout=30).json()["data"]


def test_report_through_helix_retrieve_eval(tmp_path, helix, monkeypatch):
    inputs = tiny_inputs(tmp_path)
    monkeypatch.setenv("EMBED_FT_BEIR_ROOT", str(inputs.beir_root))  # file:// tasks are uploaded from here on v2
    with running_platform(tmp_path, beir_root=inputs.beir_root) as (base_url, _settings):
        resources = resources_for_url(base_url)
        resources["evaluator"] = EvaluatorResource(base_url=helix.url, api="v2")
        instance = DagsterInstance.ephemeral()
        run = materialize_experiment(instance, resources, tiny_lineage_run_config(str(inputs.source), TINY_TASK), "v2")
        assert run.success
        # Helix reports per-query scores (row-scores): the paired tests run, and 8 queries are too few for a claim.
        assert_tiny_report(run.output_for_node("evaluation_report"))
        assert materialized_metadata_keys(run) == lineage_metadata_keys()

        baseline = run.output_for_node("baseline_evaluation")
        evaluation = instance.get_latest_materialization_event(AssetKey("baseline_evaluation")).asset_materialization
        assert set(evaluation.metadata) >= {
            "job_id",
            "job_url",
            "results_url",
            "model",
            "wait_s",
            "tasks",
            "per_query_scores",
            "tinybeir/recall_5",
            "tinybeir/ndcg_cut_10",
            "heldout/ndcg_cut_10",
            "heldout/queries",
        }
        assert evaluation.metadata["per_query_scores"].value == "reported"
        jobs = helix_list(helix.url, f"/apis/evals/v2/workspaces/{WORKSPACE}/retrieve-eval/jobs")
        ours = {job["name"]: job for job in jobs if job["name"].startswith("embed-ft-eval-")}
        assert len(ours) == 4  # baseline and fine-tuned, each on tinybeir and heldout
        assert {job["status"] for job in ours.values()} == {COMPLETED}
        assert set(baseline.job_id.split(",")) <= set(ours)
        filesets = {fs["name"] for fs in helix_list(helix.url, f"/apis/files/v2/workspaces/{WORKSPACE}/filesets")}
        assert {"embed-sft-heldout-beir", "beir-tinybeir"} <= filesets
        providers = helix_list(helix.url, f"/apis/models/v2/workspaces/{WORKSPACE}/providers")
        assert {p["host_url"] for p in providers} == {f"{base_url}/nim"}
        models = {m["name"] for m in helix_list(helix.url, f"/apis/models/v2/workspaces/{WORKSPACE}/models")}
        # Ours (one per NIM), and the ones Helix's models controller discovers on our providers by itself.
        assert {"embed-ft-baseline-nim", "embed-ft-v2-ft-nim"} <= models

        # A second materialization of the baseline evaluation reattaches to Helix's completed jobs: no new job.
        again = materialize(
            lineage_assets,
            resources=resources,
            instance=instance,
            selection=["baseline_evaluation"],  # no config: the stored spec of experiment v2, which built it last
        )
        assert again.success
        assert again.output_for_node("baseline_evaluation").metrics == baseline.metrics
        jobs_after = helix_list(helix.url, f"/apis/evals/v2/workspaces/{WORKSPACE}/retrieve-eval/jobs")
        assert len([j for j in jobs_after if j["name"].startswith("embed-ft-eval-")]) == 4
