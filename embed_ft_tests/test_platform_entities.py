"""Entity Store of the local platform: namespaces, datasets and models over HTTP, and the in-process helpers."""

from __future__ import annotations

import pytest
import requests

from embed_ft.platform.paths import InvalidPathError
from embed_ft.platform.services.entities import MODEL_KIND, register_model
from embed_ft.platform.store import EntityStore
from embed_ft_tests.platform_server import running_platform

NS = "embed-sft-ns"
DATASET = {
    "name": "embed-sft-data",
    "namespace": NS,
    "description": "SPECTER triplets",
    "files_url": f"hf://datasets/{NS}/embed-sft-data",
    "project": "embedding_sft",
}


def test_namespace_crud(tmp_path):
    with running_platform(tmp_path) as (base_url, _):
        created = requests.post(f"{base_url}/v1/namespaces", json={"id": NS, "description": "tutorial"})
        assert created.status_code == 201
        assert created.json()["id"] == NS
        assert created.json()["created_at"]
        conflict = requests.post(f"{base_url}/v1/namespaces", json={"id": NS})
        assert conflict.status_code == 409
        assert NS in conflict.json()["detail"]
        got = requests.get(f"{base_url}/v1/namespaces/{NS}").json()
        assert got["id"] == NS
        assert got["description"] == "tutorial"
        listed = requests.get(f"{base_url}/v1/namespaces", params={"page_size": 100}).json()
        assert NS in [n["id"] for n in listed["data"]]  # beside any namespace the platform seeds itself
        assert requests.delete(f"{base_url}/v1/namespaces/{NS}").json()["id"] == NS  # a DeleteResponse
        listed = requests.get(f"{base_url}/v1/namespaces", params={"page_size": 100}).json()
        assert NS not in [n["id"] for n in listed["data"]]
        missing = requests.get(f"{base_url}/v1/namespaces/{NS}")
        assert missing.status_code == 404
        assert NS in missing.json()["detail"]
        assert requests.delete(f"{base_url}/v1/namespaces/{NS}").status_code == 404


def test_dataset_crud_needs_its_namespace(tmp_path):
    with running_platform(tmp_path) as (base_url, _):
        orphan = requests.post(f"{base_url}/v1/datasets", json=DATASET)
        assert orphan.status_code == 404
        assert f"namespace {NS!r}" in orphan.json()["detail"]
        requests.post(f"{base_url}/v1/namespaces", json={"id": NS}).raise_for_status()
        created = requests.post(f"{base_url}/v1/datasets", json=DATASET)
        assert created.status_code == 201
        body = created.json()
        assert body["files_url"] == DATASET["files_url"]
        assert body["id"].startswith("dataset-")
        assert requests.post(f"{base_url}/v1/datasets", json=DATASET).status_code == 409

        got = requests.get(f"{base_url}/v1/datasets/{NS}/embed-sft-data").json()
        assert {k: got[k] for k in DATASET} == DATASET
        requests.post(f"{base_url}/v1/namespaces", json={"id": "other"}).raise_for_status()
        requests.post(f"{base_url}/v1/datasets", json={**DATASET, "namespace": "other"}).raise_for_status()
        mine = requests.get(f"{base_url}/v1/datasets", params={"filter[namespace]": NS}).json()
        assert [(d["namespace"], d["name"]) for d in mine["data"]] == [(NS, "embed-sft-data")]
        assert mine["pagination"]["total_results"] == 1

        assert requests.delete(f"{base_url}/v1/datasets/{NS}/embed-sft-data").status_code == 200
        missing = requests.get(f"{base_url}/v1/datasets/{NS}/embed-sft-data")
        assert missing.status_code == 404
        assert f"{NS}/embed-sft-data" in missing.json()["detail"]
        assert requests.delete(f"{base_url}/v1/datasets/{NS}/embed-sft-data").status_code == 404


def test_models_list_filter_sort_and_paginate(tmp_path):
    with running_platform(tmp_path) as (base_url, settings):
        store: EntityStore = EntityStore(settings.db_path)
        try:
            for job in ("cust-a", "cust-b", "cust-c"):
                register_model(
                    store,
                    NS,
                    f"tuned@{job}",
                    "sentence-transformers/all-MiniLM-L6-v2",
                    tmp_path / "models" / job,
                    description=f"from {job}",
                )
            register_model(store, "elsewhere", "other@v1", None, tmp_path / "models" / "x")
        finally:
            store.close()

        newest_first = requests.get(
            f"{base_url}/v1/models", params={"filter[namespace]": NS, "sort": "-created_at"}
        ).json()
        assert [m["name"] for m in newest_first["data"]] == ["tuned@cust-c", "tuned@cust-b", "tuned@cust-a"]
        assert newest_first["pagination"] == {
            "page": 1,
            "page_size": 10,
            "current_page_size": 3,
            "total_pages": 1,
            "total_results": 3,
        }
        first = newest_first["data"][0]
        assert first["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert first["peft"]["finetuning_type"] == "all_weights"

        oldest_first = requests.get(f"{base_url}/v1/models", params={"filter[namespace]": NS, "sort": "created_at"})
        assert [m["name"] for m in oldest_first.json()["data"]] == ["tuned@cust-a", "tuned@cust-b", "tuned@cust-c"]
        page2 = requests.get(
            f"{base_url}/v1/models", params={"filter[namespace]": NS, "sort": "name", "page": 2, "page_size": 2}
        ).json()
        assert [m["name"] for m in page2["data"]] == ["tuned@cust-c"]
        assert page2["pagination"]["total_pages"] == 2
        assert page2["pagination"]["current_page_size"] == 1
        assert requests.get(f"{base_url}/v1/models", params={"page_size": 0}).status_code == 422

        # Names with '@' work in paths, raw or percent-encoded.
        got = requests.get(f"{base_url}/v1/models/{NS}/tuned@cust-b")
        assert got.status_code == 200
        assert got.json()["description"] == "from cust-b"
        assert requests.get(f"{base_url}/v1/models/{NS}/tuned%40cust-b").json()["name"] == "tuned@cust-b"
        assert requests.delete(f"{base_url}/v1/models/{NS}/tuned@cust-b").status_code == 200
        missing = requests.get(f"{base_url}/v1/models/{NS}/tuned@cust-b")
        assert missing.status_code == 404
        assert f"{NS}/tuned@cust-b" in missing.json()["detail"]
        # register_model created the namespaces it needed.
        assert requests.get(f"{base_url}/v1/namespaces/elsewhere").status_code == 200


def test_model_registration_over_http(tmp_path):
    with running_platform(tmp_path) as (base_url, _):
        body = {"name": "manual@v1", "namespace": NS, "base_model": "org/base", "peft": {"finetuning_type": "lora"}}
        assert requests.post(f"{base_url}/v1/models", json=body).status_code == 404  # namespace first
        requests.post(f"{base_url}/v1/namespaces", json={"id": NS}).raise_for_status()
        created = requests.post(f"{base_url}/v1/models", json=body)
        assert created.status_code == 201
        assert created.json()["peft"] == {"finetuning_type": "lora"}
        assert requests.post(f"{base_url}/v1/models", json=body).status_code == 409
        wrong_type = requests.post(f"{base_url}/v1/models", json={**body, "name": "x", "peft": "lora"})
        assert wrong_type.status_code == 422


def test_register_model_helper_is_idempotent(tmp_path):
    store = EntityStore(tmp_path / "state.sqlite3")
    try:
        first = register_model(store, NS, "m@cust-1", "org/base", tmp_path / "w1")
        again = register_model(store, NS, "m@cust-1", "org/base", tmp_path / "w2", description="moved")
        assert again["id"] == first["id"]
        assert again["created_at"] == first["created_at"]
        assert store.get(MODEL_KIND, f"{NS}/m@cust-1")["artifact_path"] == str((tmp_path / "w2").resolve())
        assert store.get(MODEL_KIND, f"{NS}/m@cust-1")["artifact"]["files_url"] == (tmp_path / "w2").resolve().as_uri()
        assert store.get(MODEL_KIND, f"{NS}/missing") is None
        with pytest.raises(InvalidPathError, match="model name"):
            register_model(store, NS, "../escape", None, tmp_path)
    finally:
        store.close()


def test_entities_survive_a_restart(tmp_path):
    with running_platform(tmp_path) as (base_url, _):
        requests.post(f"{base_url}/v1/namespaces", json={"id": NS}).raise_for_status()
        requests.post(f"{base_url}/v1/datasets", json=DATASET).raise_for_status()
        requests.post(f"{base_url}/v1/models", json={"name": "m@v1", "namespace": NS}).raise_for_status()
    with running_platform(tmp_path) as (base_url, _):
        assert requests.get(f"{base_url}/v1/namespaces/{NS}").status_code == 200
        assert requests.get(f"{base_url}/v1/datasets/{NS}/embed-sft-data").json()["files_url"] == DATASET["files_url"]
        assert requests.get(f"{base_url}/v1/models/{NS}/m@v1").status_code == 200


def test_models_list_is_the_entity_store_at_nemo_url_and_the_served_models_at_nim_url(tmp_path):
    # Separate bases, as on a cluster: NEMO_URL/v1/models (with or without parameters) is the Entity Store's list,
    # NIM_URL/v1/models (NIM_URL = NEMO_URL + "/nim" locally) the served models.
    with running_platform(tmp_path) as (base_url, settings):
        store = EntityStore(settings.db_path)
        try:
            register_model(store, NS, "only-registered@v1", None, tmp_path / "w")
        finally:
            store.close()
        nim_list = requests.get(f"{settings.nim_url}/v1/models").json()
        assert nim_list["object"] == "list"
        assert "pagination" not in nim_list
        assert all(m["object"] == "model" for m in nim_list["data"])
        assert f"{NS}/only-registered@v1" not in [m["id"] for m in nim_list["data"]]  # registered, not deployed
        entity_list = requests.get(f"{base_url}/v1/models", params={"filter[namespace]": NS}).json()
        assert [m["name"] for m in entity_list["data"]] == ["only-registered@v1"]
        bare = requests.get(f"{base_url}/v1/models").json()  # no parameters: still the Entity Store
        assert f"{NS}/only-registered@v1" in [f"{m['namespace']}/{m['name']}" for m in bare["data"]]
        assert bare["pagination"]["total_results"] >= 2  # and the seeded base model
