"""Entity Store, Customizer, Deployment Management and NIM clients against the fake NeMo server.

Request bodies are compared with the tutorial's literal bodies (docs/NEMO_CONTRACT.md).
"""

from __future__ import annotations

import math

import pytest

from embed_ft.nemo import (
    Conflict,
    CustomizerClient,
    DataStoreClient,
    DeploymentClient,
    EntityStoreClient,
    NemoAPIError,
    NemoConnectionError,
    NemoResponseError,
    NimClient,
    PollTimeout,
    ServerError,
    failure_detail,
    job_status,
    nim_deployment_body,
    sft_config_body,
    sft_job_body,
)
from embed_ft.nemo.status import deployment_status, is_ready
from embed_ft_tests.nemo_fake import fake_nemo, fast_http  # noqa: F401  (fixture)

NS = "embed-sft-ns"
TUTORIAL_CONFIG = {
    "name": "llama-embed-sft-config@v1",
    "namespace": "embed-sft-ns",
    "target": "nvidia/llama-3.2-nv-embedqa-1b@v2",
    "training_options": [
        {
            "training_type": "sft",
            "finetuning_type": "all_weights",
            "num_gpus": 1,
            "num_nodes": 1,
            "micro_batch_size": 8,
            "tensor_parallel_size": 1,
            "pipeline_parallel_size": 1,
            "use_sequence_parallel": False,
        }
    ],
    "training_precision": "bf16",
    "max_seq_length": 2048,
}
TUTORIAL_JOB = {
    "name": "llama-3.2-1b-embed-sft",
    "config": "embed-sft-ns/llama-embed-sft-config@v1",
    "dataset": {"namespace": "embed-sft-ns", "name": "embed-sft-data"},
    "hyperparameters": {
        "training_type": "sft",
        "finetuning_type": "all_weights",
        "epochs": 1,
        "batch_size": 256,
        "learning_rate": 5e-6,
    },
    "output_model": "embed-sft-ns/fullweight_sft_embedding",
}
TUTORIAL_NIM = {
    "image_name": "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2",
    "image_tag": "1.6.0",
    "gpu": 1,
    "disable_lora_support": True,
}


def _job_body() -> dict:
    return sft_job_body(
        "llama-3.2-1b-embed-sft",
        "embed-sft-ns/llama-embed-sft-config@v1",
        "embed-sft-ns",
        "embed-sft-data",
        "embed-sft-ns/fullweight_sft_embedding",
    )


# Namespaces and datasets
def test_namespaces_are_json_on_the_entity_store_and_form_encoded_on_the_data_store(fake_nemo):
    entities = EntityStoreClient(fast_http(fake_nemo, "Entity Store"))
    datastore = DataStoreClient(fake_nemo.base_url)
    assert entities.ensure_namespace(NS) is True
    assert entities.ensure_namespace(NS) is False  # 409: exists
    assert datastore.ensure_namespace(NS) is True
    assert datastore.ensure_namespace(NS) is False
    json_posts = fake_nemo.requests_to("POST", "/v1/namespaces")
    assert [r.json() for r in json_posts] == [{"id": NS}, {"id": NS}]
    assert json_posts[0].headers["content-type"] == "application/json"
    form_posts = fake_nemo.requests_to("POST", "/v1/datastore/namespaces")
    assert form_posts[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_posts[0].body == b"namespace=embed-sft-ns"
    assert datastore.get_namespace(NS)["namespace"] == NS


def test_a_422_namespace_create_that_is_a_validation_error_is_raised(fake_nemo):
    entities = EntityStoreClient(fast_http(fake_nemo, "Entity Store"))
    fake_nemo.fail_next(1, status=422, method="POST", path="/v1/namespaces", body={"detail": "id: invalid characters"})
    with pytest.raises(NemoAPIError, match="HTTP 422: id: invalid characters"):
        entities.ensure_namespace("Bad Name")


def test_dataset_registration_body_and_409_returns_the_existing_one(fake_nemo):
    entities = EntityStoreClient(fast_http(fake_nemo, "Entity Store"))
    url = DataStoreClient.files_url(f"{NS}/embed-sft-data")
    first = entities.create_dataset("embed-sft-data", NS, url, description="SPECTER triplets", project="embedding_sft")
    second = entities.create_dataset("embed-sft-data", NS, url, description="SPECTER triplets", project="embedding_sft")
    assert first.created is True
    assert second.created is False
    assert second["files_url"] == "hf://datasets/embed-sft-ns/embed-sft-data"
    assert fake_nemo.requests_to("POST", "/v1/datasets")[0].json() == {
        "name": "embed-sft-data",
        "namespace": "embed-sft-ns",
        "description": "SPECTER triplets",
        "files_url": "hf://datasets/embed-sft-ns/embed-sft-data",
        "project": "embedding_sft",
    }
    assert len(fake_nemo.datasets) == 1
    with pytest.raises(Conflict, match="already registered with files_url 'hf://datasets/embed-sft-ns/embed-sft-data'"):
        entities.create_dataset("embed-sft-data", NS, "hf://datasets/other/repo")
    assert entities.delete_dataset(NS, "embed-sft-data") is True
    assert entities.delete_dataset(NS, "embed-sft-data") is False
    assert entities.get_dataset(NS, "embed-sft-data") is None


# Customizer
def test_customization_config_and_job_bodies_are_the_tutorials(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    body = sft_config_body("llama-embed-sft-config@v1", NS, "nvidia/llama-3.2-nv-embedqa-1b@v2")
    assert body == TUTORIAL_CONFIG
    config = customizer.create_config(body)
    assert config.created is True
    assert customizer.create_config(body).created is False  # 409 -> the existing config
    assert fake_nemo.requests_to("POST", "/v1/customization/configs")[0].json() == TUTORIAL_CONFIG

    assert _job_body() == TUTORIAL_JOB
    job = customizer.create_job(_job_body(), idempotency_key="key-1")
    sent = fake_nemo.requests_to("POST", "/v1/customization/jobs")[0].json()
    assert sent == {**TUTORIAL_JOB, "custom_fields": {"embed_ft_idempotency_key": "key-1"}}
    assert job["id"].startswith("cust-")
    assert job["output_model"] == f"embed-sft-ns/fullweight_sft_embedding@{job['id']}"
    assert job_status(customizer.get_job(job["id"])) == "created"


def test_a_job_whose_answer_was_lost_after_the_server_created_it_is_found_by_key(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    fake_nemo.reset_after_handling(method="POST", path="/v1/customization/jobs")
    job = customizer.create_job(_job_body(), idempotency_key="data-v1+cfg-v1")
    assert job.recovered is True
    assert job.created is True
    assert len(fake_nemo.requests_to("POST", "/v1/customization/jobs")) == 1
    assert list(fake_nemo.jobs) == [job["id"]]  # exactly one job exists


def test_a_job_create_that_timed_out_after_the_server_created_it_is_found_by_key(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer", timeout=(2.0, 0.3)))
    fake_nemo.delay_after_handling(1.5, method="POST", path="/v1/customization/jobs")
    job = customizer.create_job(_job_body(), idempotency_key="k-timeout")
    assert job.recovered is True
    assert len(fake_nemo.requests_to("POST", "/v1/customization/jobs")) == 1
    assert list(fake_nemo.jobs) == [job["id"]]


def test_a_lost_job_create_without_a_key_raises_instead_of_resubmitting(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    fake_nemo.reset_after_handling(method="POST", path="/v1/customization/jobs")
    with pytest.raises(NemoConnectionError) as info:
        customizer.create_job(_job_body())
    assert info.value.request_sent is True
    assert len(fake_nemo.requests_to("POST", "/v1/customization/jobs")) == 1


def test_a_gateway_timeout_on_job_create_looks_up_and_raises_when_nothing_was_created(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    fake_nemo.fail_next(1, status=504, method="POST", path="/v1/customization/jobs")
    with pytest.raises(ServerError) as info:
        customizer.create_job(_job_body(), idempotency_key="k-504")
    assert info.value.status == 504
    assert any("k-504" in note for note in info.value.__notes__)
    assert len(fake_nemo.requests_to("POST", "/v1/customization/jobs")) == 1
    assert len(fake_nemo.requests_to("GET", "/v1/customization/jobs")) >= 1  # it looked
    assert fake_nemo.jobs == {}


def test_find_job_returns_the_newest_job_with_the_key(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    first = customizer.create_job(_job_body(), idempotency_key="same")
    customizer.create_job(_job_body(), idempotency_key="other")
    fake_nemo.set_job_status(first["id"], "failed", detail="boom")
    second = customizer.create_job(_job_body(), idempotency_key="same")
    assert customizer.find_job("same")["id"] == second["id"]
    assert customizer.find_job("missing") is None


def test_find_job_scans_every_page_narrowed_by_the_body_s_filters(fake_nemo):
    """Issue 12: a customization job older than 2,000 others is still found (no page limit), and the lookup sends
    the Customizer's list filters that the body fixes (it has no custom_fields filter)."""
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    body = _job_body()
    original = customizer.create_job(body, idempotency_key="oldest")
    for i in range(2_100):  # newer jobs, straight into the fake's table (2,100 POSTs would only cost time)
        fake_nemo.jobs[f"cust-{i:05d}"] = {
            **original,
            "id": f"cust-{i:05d}",
            "custom_fields": {"k": str(i)},
            "created_at": f"2999-01-01T00:00:00.{i:06d}+00:00",
        }
    fake_nemo.requests.clear()
    assert customizer.find_job("oldest", like=body)["id"] == original["id"]
    pages = fake_nemo.requests_to("GET", "/v1/customization/jobs")
    assert len(pages) == 22  # 2,101 jobs at 100 a page: every page was read
    query = pages[0].query
    assert query["filter[finetuning_type]"] == body["hyperparameters"]["finetuning_type"]
    assert query["filter[epochs]"] == str(body["hyperparameters"]["epochs"])
    assert "filter[custom_fields][embed_ft_idempotency_key]" not in query


def test_status_endpoint_and_the_detail_of_a_failed_job(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    job = customizer.create_job(_job_body())
    fake_nemo.set_job_status(job["id"], "running")
    fake_nemo.set_job_status(job["id"], "failed", detail="CUDA out of memory at step 12")
    status = customizer.get_status(job["id"])
    assert job_status(status) == "failed"
    assert status["steps_per_epoch"] == 254
    assert failure_detail(status) == "CUDA out of memory at step 12"
    assert failure_detail(customizer.get_job(job["id"])) == "CUDA out of memory at step 12"


def test_cancel_a_running_job_and_cancel_an_ended_one(fake_nemo):
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    running = customizer.create_job(_job_body())
    fake_nemo.set_job_status(running["id"], "running")
    assert job_status(customizer.cancel_job(running["id"])) == "cancelled"
    done = customizer.create_job(_job_body())
    fake_nemo.set_job_status(done["id"], "completed")
    assert job_status(customizer.cancel_job(done["id"])) == "completed"  # 409 from the server: returned as is
    with pytest.raises(NemoAPIError, match="HTTP 404"):
        customizer.cancel_job("cust-missing")


# Deployment Management
def test_deployment_body_and_the_500_on_existing_quirk(fake_nemo):
    deployments = DeploymentClient(fast_http(fake_nemo, "Deployment Management"))
    model = "embed-sft-ns/fullweight_sft_embedding@cust-1"
    assert nim_deployment_body() == TUTORIAL_NIM
    first = deployments.create_deployment("llama-embed-sft-deploy", NS, model, nim_deployment_body())
    second = deployments.create_deployment("llama-embed-sft-deploy", NS, model, nim_deployment_body())
    assert first.created is True
    assert second.created is False
    assert fake_nemo.requests_to("POST", "/v1/deployment/model-deployments")[0].json() == {
        "name": "llama-embed-sft-deploy",
        "namespace": "embed-sft-ns",
        "config": {"model": model, "nim_deployment": TUTORIAL_NIM},
    }
    assert len(fake_nemo.requests_to("POST", "/v1/deployment/model-deployments")) == 2  # the 500 was not retried
    assert len(fake_nemo.deployments) == 1

    fake_nemo.deployment_exists_status = 409
    assert deployments.create_deployment("llama-embed-sft-deploy", NS, model, nim_deployment_body()).created is False
    with pytest.raises(Conflict, match="serves 'embed-sft-ns/fullweight_sft_embedding@cust-1'"):
        deployments.create_deployment(
            "llama-embed-sft-deploy", NS, model.replace("cust-1", "cust-2"), nim_deployment_body()
        )


def test_a_genuine_500_on_deployment_create_is_raised(fake_nemo):
    deployments = DeploymentClient(fast_http(fake_nemo, "Deployment Management"))
    fake_nemo.fail_next(1, status=500, method="POST", body={"detail": "helm install failed"})
    with pytest.raises(ServerError, match="helm install failed"):
        deployments.create_deployment("d", NS, "m/x", nim_deployment_body())
    assert len(fake_nemo.requests_to("POST", "/v1/deployment/model-deployments")) == 1
    assert fake_nemo.deployments == {}


def test_deployment_statuses_are_compared_case_insensitively_and_delete_tolerates_404(fake_nemo):
    fake_nemo.upper_case_statuses = True
    deployments = DeploymentClient(fast_http(fake_nemo, "Deployment Management"))
    deployments.create_deployment("d", NS, "m/x", nim_deployment_body())
    assert deployment_status(deployments.get_deployment(NS, "d")) == "pending"
    fake_nemo.set_deployment_status(NS, "d", "ready")
    doc = deployments.get_deployment(NS, "d")
    assert doc["status_details"]["status"] == "READY"
    assert deployment_status(doc) == "ready"
    assert is_ready(doc)
    assert deployments.delete_deployment(NS, "d") is True
    assert deployments.delete_deployment(NS, "d") is False
    assert deployments.get_deployment(NS, "d") is None


# NIM
def test_embeddings_float_and_base64_agree(fake_nemo):
    fake_nemo.served_models.append("embed-sft-ns/fullweight_sft_embedding")
    nim = NimClient(fast_http(fake_nemo, "NIM"))
    assert "embed-sft-ns/fullweight_sft_embedding" in nim.list_models()
    texts = ["a query", "another query", "third"]
    floats = nim.embed(texts, "embed-sft-ns/fullweight_sft_embedding")
    packed = nim.embed(texts, "embed-sft-ns/fullweight_sft_embedding", encoding_format="base64")
    assert len(floats) == 3
    assert {len(v) for v in floats} == {fake_nemo.embedding_dim}
    for a, b in zip(floats, packed, strict=True):
        assert all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(a, b, strict=True))
    passages = nim.embed(texts, "embed-sft-ns/fullweight_sft_embedding", input_type="passage")
    assert passages != floats  # input_type reaches the server
    assert fake_nemo.requests_to("POST", "/v1/embeddings")[0].json() == {
        "input": texts,
        "model": "embed-sft-ns/fullweight_sft_embedding",
        "input_type": "query",
        "encoding_format": "float",
    }
    assert nim.embed([], "embed-sft-ns/fullweight_sft_embedding") == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([{"index": 0, "embedding": [0.1, 0.2]}, {"index": 1, "embedding": [0.1]}], "inconsistent dimensions"),
        ([{"index": 0, "embedding": [0.1, float("nan")]}, {"index": 1, "embedding": [0.1, 0.2]}], "non-finite value"),
        ([{"index": 0, "embedding": [0.1, 0.2]}], "sent 2 texts, got 1 embeddings"),
        ([{"index": 0, "embedding": "%%%"}, {"index": 1, "embedding": "AAAA"}], "not valid base64"),
    ],
)
def test_bad_embeddings_raise_clear_errors(fake_nemo, data, message):
    nim = NimClient(fast_http(fake_nemo, "NIM"))
    fake_nemo.fail_next(1, status=200, method="POST", body={"object": "list", "data": data})
    with pytest.raises(NemoResponseError, match=message):
        nim.embed(["q1", "q2"], "m/x")


def test_wait_for_model_polls_until_the_gateway_lists_it(fake_nemo):
    nim = NimClient(fast_http(fake_nemo, "NIM"))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the model appears after the second wait
        sleeps.append(seconds)
        if len(sleeps) == 2:
            fake_nemo.served_models.append("ns/m")

    ids = nim.wait_for_model("ns/m", timeout_s=600, interval_s=5, sleep=sleep)
    assert "ns/m" in ids
    assert len(sleeps) == 2
    assert len(fake_nemo.requests_to("GET", "/v1/models")) == 3
    clock = iter(range(0, 10_000, 10))
    with pytest.raises(PollTimeout, match="list model 'ns/absent'"):
        nim.wait_for_model("ns/absent", timeout_s=25, interval_s=5, sleep=lambda s: None, clock=lambda: next(clock))
