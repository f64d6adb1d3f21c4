"""Hardening, round 2 (issue 24, F3-F6): nothing in use is deleted, weights only from the platform's stores, a
cap on live deployments, namespaces guarded atomically.

Every test talks to a platform on 127.0.0.1 over HTTP only (the module platform of test_platform_hardening_round2,
one per module, or the in-process helper where a restart of the same home or a setting is the point).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests

from embed_ft.platform.services.model_weights import bundled_minilm_path
from embed_ft_tests.home_probes import served_platform
from embed_ft_tests.platform_customizer_helpers import TIMEOUT, deploy, embeddings, wait_for
from embed_ft_tests.platform_server import running_platform

NS = "in-use-ns"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One subprocess platform (``embed-ft platform serve``) with the namespace NS."""
    tmp = tmp_path_factory.mktemp("in-use")
    with served_platform(tmp / "home", tmp / "platform.log") as served:
        assert requests.post(f"{served.url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).status_code == 201
        yield served


# ============================================================ F3: a served model is not deleted


def linked_minilm(folder: Path) -> Path:
    """A model folder whose files link to the bundled all-MiniLM-L6-v2 (a trained model's folder, cheaply)."""
    folder.mkdir(parents=True)
    for item in bundled_minilm_path().iterdir():
        (folder / item.name).symlink_to(item)
    return folder


@pytest.mark.slow  # two start-ups of the same home and a model load: ~45 s on 2 shared cores
def test_deleting_a_model_a_deployment_serves_is_409_and_its_weights_stay(tmp_path):
    """F3: ``DELETE /v1/models/{ns}/{name}`` answered 200 while a deployment served it; the next start-up's
    clean-up removed its weights and the deployment failed. Now 409 naming the deployment; after a restart the
    deployment serves again; once the deployment is gone the model can be deleted."""
    weights = linked_minilm(tmp_path / "platform-home" / "models" / "r2served")
    model = f"{NS}/served@v2"
    with running_platform(tmp_path) as (base_url, _):
        assert requests.post(f"{base_url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).status_code == 201
        created = requests.post(
            f"{base_url}/v1/models",
            json={"name": "served@v2", "namespace": NS, "artifact_path": str(weights)},
            timeout=TIMEOUT,
        )
        assert created.status_code == 201, created.text[:300]
        assert deploy(base_url, NS, "served-dep", model)["status_details"]["status"] == "ready"
        refused = requests.delete(f"{base_url}/v1/models/{model}", timeout=TIMEOUT)
        assert refused.status_code == 409, refused.text[:300]
        assert f"{NS}/served-dep" in refused.json()["detail"]
    assert weights.is_dir()
    with running_platform(tmp_path) as (base_url, _):
        doc = wait_for(
            lambda: (
                (
                    d := requests.get(
                        f"{base_url}/v1/deployment/model-deployments/{NS}/served-dep", timeout=TIMEOUT
                    ).json()
                )["status_details"]["status"]
                != "pending"
                and d
            ),
            120,
            "the deployment to settle after the restart",
        )
        assert doc["status_details"]["status"] == "ready", doc
        assert embeddings(base_url, f"{NS}/served", ["a text"]).status_code == 200
        gone = requests.delete(f"{base_url}/v1/deployment/model-deployments/{NS}/served-dep", timeout=TIMEOUT)
        assert gone.status_code < 300, gone.text[:300]
        assert requests.delete(f"{base_url}/v1/models/{model}", timeout=TIMEOUT).status_code == 200


# ============================================================ F4: target weights confined to the stores


@pytest.mark.parametrize("field", ["model_path", "model_uri", "symlink"])
def test_target_outside_the_platform_stores_is_refused(server, tmp_path, field):
    """F4: ``model_path`` pointing into another home answered 200 and the target deployed and served those weights.
    Now 4xx naming the field and the allowed folders; a symlink from the home's models folder outward counts as
    outside; nothing is stored."""
    stolen = tmp_path / "other-home" / "models" / "someone-elses-model"
    stolen.mkdir(parents=True)
    (stolen / "config.json").write_text('{"model_type": "bert"}')
    location: dict = {"model_path": str(stolen)} if field == "model_path" else {"model_uri": stolen.as_uri()}
    if field == "symlink":
        link = server.home / "models" / f"link-{tmp_path.name}"
        link.symlink_to(stolen)
        location = {"model_path": str(link)}
    name = f"stolen-{field}@v1"
    response = requests.post(
        f"{server.url}/v1/customization/targets", json={"namespace": NS, "name": name, **location}, timeout=TIMEOUT
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert ("model_uri" if field == "model_uri" else "model_path") in response.json()["detail"], response.text[:300]
    assert "outside" in response.json()["detail"], response.text[:300]
    assert requests.get(f"{server.url}/v1/customization/targets/{NS}/{name}", timeout=TIMEOUT).status_code == 404


def test_target_in_the_platform_stores_is_accepted(server):
    inside = server.home / "models" / "imported-model"
    inside.mkdir(parents=True, exist_ok=True)
    (inside / "config.json").write_text('{"model_type": "bert"}')
    response = requests.post(
        f"{server.url}/v1/customization/targets",
        json={"namespace": NS, "name": "imported@v1", "model_path": str(inside)},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text[:300]


# ============================================================ F5: a cap on live deployments


def test_live_deployments_are_capped_naming_the_limit(tmp_path):
    """F5: nothing bounded the number of live deployments (each holds a model in memory). Now a create beyond
    ``max_deployments`` is 409 naming the limit, and deleting one makes room again. (The memory each undeploy
    gives back is measured by bench/bench_deploy_memory.py, BENCHMARKS.md.)"""
    with running_platform(tmp_path, max_deployments=2) as (base_url, _):
        for name in ("cap-a", "cap-b"):
            assert deploy(base_url, NS, name, BASE_MODEL)["status_details"]["status"] == "ready"
        third = requests.post(
            f"{base_url}/v1/deployment/model-deployments",
            json={"name": "cap-c", "namespace": NS, "config": {"model": BASE_MODEL}},
            timeout=TIMEOUT,
        )
        assert third.status_code == 409, third.text[:300]
        assert "max_deployments" in third.json()["detail"], third.text[:300]
        missing = requests.get(f"{base_url}/v1/deployment/model-deployments/{NS}/cap-c", timeout=TIMEOUT)
        assert missing.status_code == 404
        assert requests.delete(f"{base_url}/v1/deployment/model-deployments/{NS}/cap-a", timeout=TIMEOUT).ok
        assert deploy(base_url, NS, "cap-c", BASE_MODEL)["status_details"]["status"] == "ready"


# ============================================================ F6: namespaces guarded atomically


def race(*calls) -> list[requests.Response]:
    """Run the calls at the same moment (threads released by one barrier); their answers in order."""
    barrier = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT[1])
    return answers


def test_namespace_delete_racing_a_dataset_create_never_leaves_an_orphan(server):
    """F6: ``DELETE /v1/namespaces/X`` racing ``POST /v1/datasets {namespace: X}``: both succeeded in 23 of 40
    tries, leaving datasets in a namespace that no longer exists. Now one of them loses, every time."""
    base_url = server.url
    orphans = []
    for attempt in range(40):
        namespace = f"race-{attempt}"
        assert requests.post(f"{base_url}/v1/namespaces", json={"id": namespace}, timeout=TIMEOUT).status_code == 201
        deleted, created = race(
            lambda namespace=namespace: requests.delete(f"{base_url}/v1/namespaces/{namespace}", timeout=TIMEOUT),
            lambda namespace=namespace: requests.post(
                f"{base_url}/v1/datasets",
                json={"name": "d", "namespace": namespace, "files_url": f"hf://datasets/{namespace}/d"},
                timeout=TIMEOUT,
            ),
        )
        assert deleted.status_code < 500, deleted.text[:300]
        assert created.status_code < 500, created.text[:300]
        if deleted.ok and created.ok:
            orphans.append(namespace)
    assert not orphans, f"both the delete and the create succeeded for {orphans}"


def test_repo_in_a_datastore_namespace_never_created_is_404(server):
    """F6: Data Store repos could be created in a namespace never created. Now 404 naming it; a racing namespace
    delete and repo create never both succeed."""
    base_url = server.url
    response = requests.post(
        f"{base_url}/v1/hf/api/repos/create",
        json={"name": "r", "organization": "never-created", "type": "dataset"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 404, response.text[:300]
    assert "never-created" in response.json()["detail"]
    assert "/v1/datastore/namespaces" in response.json()["detail"]
    orphans = []
    for attempt in range(20):
        namespace = f"ds-race-{attempt}"
        assert (
            requests.post(
                f"{base_url}/v1/datastore/namespaces", data={"namespace": namespace}, timeout=TIMEOUT
            ).status_code
            < 300
        )
        deleted, created = race(
            lambda namespace=namespace: requests.delete(
                f"{base_url}/v1/datastore/namespaces/{namespace}", timeout=TIMEOUT
            ),
            lambda namespace=namespace: requests.post(
                f"{base_url}/v1/hf/api/repos/create",
                json={"name": "r", "organization": namespace, "type": "dataset"},
                timeout=TIMEOUT,
            ),
        )
        assert deleted.status_code < 500, deleted.text[:300]
        assert created.status_code < 500, created.text[:300]
        if deleted.ok and created.ok:
            orphans.append(namespace)
    assert not orphans, f"both the delete and the create succeeded for {orphans}"
