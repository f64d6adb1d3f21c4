"""The whole lineage, materialized for real against the local platform on 127.0.0.1 (tiny data, few steps), for two
experiments in one Dagster instance: two partitions with their own histories, one shared baseline, a leaderboard
with both, a rerun without config that uses the stored settings, and a teardown that leaves a trace."""

from __future__ import annotations

import pytest
import requests
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from embed_ft.definitions import lineage_assets
from embed_ft.defs.leaderboard import leaderboard_rows
from embed_ft.defs.teardown import teardown_deployments_job
from embed_ft.history import latest_reports
from embed_ft.resources import resources_for_url

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

pytestmark = pytest.mark.slow

EXPERIMENT_ASSETS = ["fine_tuned_model", "fine_tuned_nim", "fine_tuned_evaluation", "evaluation_report"]


def listed(base_url: str, path: str) -> list[dict]:
    return requests.get(f"{base_url}{path}", timeout=10).json()["data"]


def test_two_experiments_share_one_baseline_on_the_local_platform(tmp_path):
    inputs = tiny_inputs(tmp_path)
    source = inputs.source
    with running_platform(tmp_path, beir_root=inputs.beir_root) as (base_url, _settings):
        resources = resources_for_url(base_url)
        instance = DagsterInstance.ephemeral()
        first = materialize_experiment(instance, resources, tiny_lineage_run_config(str(source), TINY_TASK), "steps-3")
        assert first.success
        # The local evaluator reports per-query scores; 8 queries per task are too few for a claim, and say so.
        assert_tiny_report(first.output_for_node("evaluation_report"))
        # The graph and the metadata keys of every asset: the one expectation the v2 lineage test checks too.
        assert materialized_metadata_keys(first) == lineage_metadata_keys()
        check = first.get_asset_check_evaluations()
        beats = [e for e in check if e.check_name == "fine_tuned_beats_baseline"]
        assert beats[0].passed is False
        assert "Could not be tested" in beats[0].description
        model = first.output_for_node("fine_tuned_model")
        assert "@cust-" in model.output_model
        assert model.experiment == "steps-3"
        model_mat = instance.get_latest_materialization_event(AssetKey("fine_tuned_model")).asset_materialization
        assert model_mat.partition == "steps-3"
        assert model_mat.metadata["settings"].value["max_steps"] == 3
        assert model_mat.metadata["training_data_version"].value
        assert model_mat.metadata["loss_chart"].value.startswith("![training loss](data:image/png;base64,")

        # A second experiment: its own model, NIM and evaluation; the baseline's jobs are reattached, not rerun.
        second = materialize_experiment(
            instance, resources, tiny_lineage_run_config(str(source), TINY_TASK, max_steps=4), "steps-4"
        )
        assert second.success
        assert (
            second.output_for_node("baseline_evaluation").job_id == first.output_for_node("baseline_evaluation").job_id
        )
        assert second.output_for_node("fine_tuned_model").job_id != model.job_id
        evaluation_jobs = listed(base_url, "/v1/evaluation/jobs")
        assert len(evaluation_jobs) == 3  # one baseline + one per experiment
        deployments = sorted(d["name"] for d in listed(base_url, "/v1/deployment/model-deployments"))
        assert deployments == ["baseline-nim", "steps-3-ft-nim", "steps-4-ft-nim"]
        for name in EXPERIMENT_ASSETS:
            assert instance.get_materialized_partitions(AssetKey(name)) == {"steps-3", "steps-4"}, name
        reports = instance.fetch_materializations(AssetKey("evaluation_report"), limit=10).records
        assert sorted(r.partition_key for r in reports) == ["steps-3", "steps-4"]
        baseline_job = first.output_for_node("baseline_evaluation").job_id
        for record in reports:
            assert record.asset_materialization.metadata["baseline_job_id"].value == baseline_job
        board = leaderboard_rows(latest_reports(instance))
        assert {r.experiment for r in board} == {"steps-3", "steps-4"}
        board_mat = instance.get_latest_materialization_event(AssetKey("experiment_leaderboard")).asset_materialization
        assert board_mat.metadata["experiments"].value == 2

        # A run with no config at all (what gpu_stages_automation launches) uses the experiment's stored settings:
        # same hyperparameters, so it reattaches to the completed customization job instead of training again.
        rerun = materialize(
            [*lineage_assets],
            resources=resources,
            instance=instance,
            partition_key="steps-3",
            selection=["fine_tuned_model"],
        )
        assert rerun.success
        assert rerun.output_for_node("fine_tuned_model").job_id == model.job_id
        assert len(listed(base_url, "/v1/customization/jobs")) == 2

        # Teardown of one experiment keeps the base NIM (steps-4 still needs it); of the other, removes it too.
        one = teardown_deployments_job.execute_in_process(
            run_config={"ops": {"delete_deployments": {"config": {"experiments": ["steps-3"]}}}},
            instance=instance,
            resources=resources,
        )
        assert one.output_for_node("delete_deployments") == ["embed-sft-ns/steps-3-ft-nim"]
        rest = teardown_deployments_job.execute_in_process(instance=instance, resources=resources)
        assert sorted(rest.output_for_node("delete_deployments")) == [
            "embed-sft-ns/baseline-nim",
            "embed-sft-ns/steps-4-ft-nim",
        ]
        assert listed(base_url, "/v1/deployment/model-deployments") == []
        observation = instance.fetch_observations(AssetKey("fine_tuned_nim"), limit=5).records
        assert {r.partition_key for r in observation} == {"steps-3", "steps-4"}
        deleted = {r.partition_key for r in observation if r.asset_observation.metadata["status"].value == "deleted"}
        assert deleted == {"steps-3", "steps-4"}
        # The `deployment_live` check of the shared base NIM passed after its materialization; teardown failed it.
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("baseline_nim"), "deployment_live"), limit=10
        )
        verdicts = [r.event.asset_check_evaluation.passed for r in history if r.event is not None]
        assert verdicts[0] is False
        assert True in verdicts[1:]
