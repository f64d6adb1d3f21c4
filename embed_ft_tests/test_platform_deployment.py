"""Deployment Management of the local platform over real HTTP: both create styles, the 500 quirk, failures, delete."""

from __future__ import annotations

import pytest
import requests

from embed_ft.platform.settings import service_urls
from embed_ft_tests.platform_customizer_helpers import TIMEOUT, deploy, embeddings, wait_for
from embed_ft_tests.platform_server import running_platform

NS = "deploy-ns"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
NIM = {
    "image_name": "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2",
    "image_tag": "1.6.0",
    "gpu": 1,
    "disable_lora_support": True,
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with running_platform(tmp_path_factory.mktemp("deployment")) as (base_url, settings):
        yield base_url, settings


def _get(base_url: str, name: str) -> requests.Response:
    return requests.get(f"{base_url}/v1/deployment/model-deployments/{NS}/{name}", timeout=TIMEOUT)


def test_inline_deployment_becomes_ready_and_existing_one_answers_500(platform):
    base_url, settings = platform
    doc = deploy(base_url, NS, "inline-base", BASE_MODEL)
    assert doc["status_details"]["status"] == "ready", doc
    assert doc["deployed"] is True
    assert doc["models"] == [BASE_MODEL]
    assert doc["url"] == settings.base_url
    assert doc["name"] == "inline-base"
    assert doc["namespace"] == NS
    again = requests.post(
        f"{base_url}/v1/deployment/model-deployments",
        json={"name": "inline-base", "namespace": NS, "config": {"model": BASE_MODEL, "nim_deployment": NIM}},
        timeout=TIMEOUT,
    )
    assert again.status_code == 500
    assert "already exists" in again.json()["detail"]
    assert embeddings(base_url, BASE_MODEL, "hello").status_code == 200


def test_config_reference_style_and_delete_undeploys(platform):
    base_url, _ = platform
    config = requests.post(
        f"{base_url}/v1/deployment/configs",
        json={
            "name": "base-config",
            "namespace": NS,
            "model": "sentence-transformers/all-minilm-l6-v2@v1",
            "nim_deployment": NIM,
        },
        timeout=TIMEOUT,
    )
    assert config.status_code == 200, config.text
    duplicate = requests.post(
        f"{base_url}/v1/deployment/configs",
        json={"name": "base-config", "namespace": NS, "model": BASE_MODEL, "nim_deployment": NIM},
        timeout=TIMEOUT,
    )
    assert duplicate.status_code == 409
    created = requests.post(
        f"{base_url}/v1/deployment/model-deployments",
        json={"name": "by-config", "namespace": NS, "config": f"{NS}/base-config"},
        timeout=TIMEOUT,
    )
    assert created.status_code == 200, created.text
    # The target name resolves to the same weights; it is served under its unversioned name.
    ready = wait_for(
        lambda: (d := _get(base_url, "by-config").json())["status_details"]["status"] == "ready" and d,
        120,
        "deployment by-config to be ready",
    )
    assert ready["models"] == ["sentence-transformers/all-minilm-l6-v2"]
    served = [
        m["id"] for m in requests.get(f"{service_urls(base_url)['NIM_URL']}/v1/models", timeout=TIMEOUT).json()["data"]
    ]
    assert "sentence-transformers/all-minilm-l6-v2" in served

    deleted = requests.delete(f"{base_url}/v1/deployment/model-deployments/{NS}/by-config", timeout=TIMEOUT)
    assert deleted.status_code == 200
    assert _get(base_url, "by-config").status_code == 404
    gone = embeddings(base_url, "sentence-transformers/all-minilm-l6-v2", "hello")
    assert gone.status_code == 404
    assert "all-minilm-l6-v2" in gone.json()["detail"]
    served = [
        m["id"] for m in requests.get(f"{service_urls(base_url)['NIM_URL']}/v1/models", timeout=TIMEOUT).json()["data"]
    ]
    assert "sentence-transformers/all-minilm-l6-v2" not in served
    again = requests.delete(f"{base_url}/v1/deployment/model-deployments/{NS}/by-config", timeout=TIMEOUT)
    assert again.status_code == 404


def test_unknown_model_makes_the_deployment_failed_naming_it(platform):
    base_url, _ = platform
    doc = deploy(base_url, NS, "ghost", f"{NS}/no-such-model@cust-AAAAAAAAAAAAAAAAAAAAAA")
    assert doc["status_details"]["status"] == "failed"
    assert doc["deployed"] is False
    assert f"{NS}/no-such-model@cust-AAAAAAAAAAAAAAAAAAAAAA" in doc["status_details"]["description"]
    assert embeddings(base_url, f"{NS}/no-such-model", "x").status_code == 404


def test_bad_deployment_requests(platform):
    base_url, _ = platform
    url = f"{base_url}/v1/deployment/model-deployments"
    unknown_config = requests.post(url, json={"name": "d1", "namespace": NS, "config": f"{NS}/nope"}, timeout=TIMEOUT)
    assert unknown_config.status_code == 404
    assert f"{NS}/nope" in unknown_config.json()["detail"]
    lora = requests.post(
        url,
        json={
            "name": "d2",
            "namespace": NS,
            "config": {"model": BASE_MODEL, "nim_deployment": {**NIM, "disable_lora_support": False}},
        },
        timeout=TIMEOUT,
    )
    assert lora.status_code == 422
    assert "disable_lora_support" in lora.json()["detail"]
    bad_model = requests.post(
        url, json={"name": "d3", "namespace": NS, "config": {"model": "no-namespace"}}, timeout=TIMEOUT
    )
    assert bad_model.status_code == 422
    assert "no-namespace" in bad_model.json()["detail"]
    bad_name = requests.post(
        url, json={"name": "../x", "namespace": NS, "config": {"model": BASE_MODEL}}, timeout=TIMEOUT
    )
    assert bad_name.status_code == 422
    missing = requests.post(url, json={"name": "d4", "namespace": NS}, timeout=TIMEOUT)
    assert missing.status_code == 422
    for name in ("d1", "d2", "d3", "d4"):
        assert _get(base_url, name).status_code == 404


def test_ready_deployment_is_served_again_after_a_restart(tmp_path):
    with running_platform(tmp_path) as (base_url, _):
        assert deploy(base_url, NS, "keeper", BASE_MODEL)["status_details"]["status"] == "ready"
        before = embeddings(base_url, BASE_MODEL, "persisted").json()["data"][0]["embedding"]
    with running_platform(tmp_path) as (base_url, _):
        ready = wait_for(
            lambda: (d := _get(base_url, "keeper").json())["status_details"]["status"] == "ready" and d,
            120,
            "deployment keeper to be ready again",
        )
        assert ready["deployed"] is True
        after = embeddings(base_url, BASE_MODEL, "persisted")
        assert after.status_code == 200
        assert after.json()["data"][0]["embedding"] == pytest.approx(before, abs=1e-6)
