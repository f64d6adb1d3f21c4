"""The whole lineage, materialized for real against the local platform on 127.0.0.1 (tiny data, few steps)."""

from __future__ import annotations

import math

import pytest
import requests
from dagster import AssetKey, DagsterInstance, materialize

from embed_ft.definitions import defs, lineage_assets
from embed_ft.resources import resources_for_url

from .lineage_fixtures import tiny_lineage_run_config, write_beir_set, write_specter_jsonl
from .platform_server import running_platform

pytestmark = pytest.mark.slow


def run_config(source: str, experiment: str = "e2e") -> dict:
    return tiny_lineage_run_config(source, "file://tinybeir/", experiment)


def test_full_lineage_on_local_platform(tmp_path):
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    beir_root = tmp_path / "beir"
    write_beir_set(beir_root)
    with running_platform(tmp_path, beir_root=beir_root) as (base_url, _settings):
        resources = resources_for_url(base_url)
        instance = DagsterInstance.ephemeral()
        result = materialize(
            [*lineage_assets, *(defs.asset_checks or [])],
            resources=resources,
            run_config=run_config(str(source)),
            instance=instance,
        )
        assert result.success
        report = result.output_for_node("evaluation_report")
        tasks = {row.task for row in report.rows}
        assert tasks == {"tinybeir", "heldout"}
        for row in report.rows:
            assert 0.0 <= row.baseline <= 1.0
            assert 0.0 <= row.fine_tuned <= 1.0
            assert math.isclose(row.delta, row.fine_tuned - row.baseline)
        # The report's numbers are the evaluations' numbers, keyed stably for the UI's history plots.
        mat = instance.get_latest_materialization_event(AssetKey("evaluation_report")).asset_materialization
        assert mat.metadata["tinybeir/ndcg_cut_10/baseline"].value == pytest.approx(
            result.output_for_node("baseline_evaluation").metrics["tinybeir"]["ndcg_cut_10"]
        )
        model = result.output_for_node("fine_tuned_model")
        assert "@cust-" in model.output_model

        jobs = requests.get(f"{base_url}/v1/customization/jobs", timeout=10).json()["data"]
        assert len(jobs) == 1

        # A second materialization of the same inputs reattaches to the completed job: still exactly one job.
        selected = ["training_dataset", "fine_tuned_model"]
        full = run_config(str(source))["ops"]
        again = materialize(
            [*lineage_assets],
            resources=resources,
            run_config={"ops": {k: v for k, v in full.items() if k in selected}},
            instance=instance,
            selection=selected,
        )
        assert again.success
        assert again.output_for_node("fine_tuned_model").job_id == model.job_id
        jobs = requests.get(f"{base_url}/v1/customization/jobs", timeout=10).json()["data"]
        assert len(jobs) == 1
        dataset_mat = instance.get_latest_materialization_event(AssetKey("training_dataset")).asset_materialization
        assert dataset_mat.metadata["uploaded"].value is False
