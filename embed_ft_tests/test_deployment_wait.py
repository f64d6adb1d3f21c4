"""The NIM assets of both API generations wait on their deployment through one helper
(`remote_jobs.wait_for_deployment`): a deployment that ends failed fails the asset for good with its own status
message, whichever field the generation keeps it in. Run against the real local platform (v1 routes, and the v2
routes it serves on its own), no Helix: the deployment fails before any gateway is involved."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from embed_ft.defs.serving import BASELINE_DEPLOYMENT
from embed_ft.resources import resources_for_v2

from .fault_scenarios import failure_text, make_resources, materialize_assets, run_config
from .lineage_fixtures import write_specter_jsonl
from .platform_server import running_platform

NAMESPACE = "embed-sft-ns"
GHOST = f"{NAMESPACE}/no-such-model@v1"


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_failed_deployment_fails_the_nim_asset_with_its_message(tmp_path, api):
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    config = run_config(source, tmp_path / "data", experiment=f"ghost-{api}", poll_s=0.2)
    config["changes"]["serving.base_model"] = GHOST
    with running_platform(tmp_path) as (url, _settings):
        resources = make_resources(url) if api == "v1" else resources_for_v2(url, url)  # v2: all on our platform
        result = materialize_assets(["baseline_nim"], resources, config, DagsterInstance.ephemeral())
    assert not result.success
    text = failure_text(result)
    assert f"Deployment {NAMESPACE}/{BASELINE_DEPLOYMENT} of {GHOST} ended " in text
    assert "Run teardown_deployments_job to remove it." in text
    # The platform's own words (v1: status_details.description, v2: status_message), not the fallback.
    assert "no-such-model" in text.split(" ended ", 1)[1]
    assert "no description" not in text
    assert "no message" not in text
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []  # a failed deployment is the answer, not retried
