"""Customizer of the local platform over real HTTP: targets, configs, job validation, real training and cancel."""

from __future__ import annotations

import multiprocessing
import os
import re

import numpy as np
import pytest
import requests
from sentence_transformers import SentenceTransformer

from embed_ft.platform.services.model_weights import bundled_minilm_path
from embed_ft.platform.services.training.worker import bf16_supported
from embed_ft_tests.platform_customizer_helpers import (
    TIMEOUT,
    create_config,
    deploy,
    embeddings,
    job_body,
    job_status,
    jsonl,
    make_triplets,
    upload_dataset,
    wait_for,
    wait_for_job,
)
from embed_ft_tests.platform_server import running_platform

NS = "embed-sft-ns"
CONFIG = f"{NS}/minilm-sft@v1"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """One platform for the module: a good dataset, a dataset with broken rows, and a config."""
    tmp = tmp_path_factory.mktemp("customizer")
    with running_platform(tmp) as (base_url, settings):
        upload_dataset(base_url, NS, "tiny", jsonl(make_triplets(32)), jsonl(make_triplets(8, offset=100)), tmp)
        broken = jsonl(make_triplets(3)) + '{"query": "q", "neg_doc": ["n"]}\n' + "not json at all\n"
        upload_dataset(base_url, NS, "broken", broken, None, tmp)
        create_config(base_url, NS)
        yield base_url, settings


def _post_job(base_url: str, body: dict) -> requests.Response:
    return requests.post(f"{base_url}/v1/customization/jobs", json=body, timeout=TIMEOUT)


# ---------------------------------------------------------------------------------------------- targets


def test_default_target_is_seeded_with_nemo_fields(platform):
    base_url, _ = platform
    listed = requests.get(f"{base_url}/v1/customization/targets", timeout=TIMEOUT).json()
    assert listed["pagination"]["total_results"] >= 1
    target = requests.get(
        f"{base_url}/v1/customization/targets/sentence-transformers/all-minilm-l6-v2@v1", timeout=TIMEOUT
    ).json()
    assert target["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert target["enabled"] is True
    assert target["status"] == "ready"
    assert target["num_parameters"] == 22_713_216
    assert target["precision"]
    assert target["model_uri"].startswith("file://")
    assert os.path.isdir(target["model_path"])
    base = requests.get(f"{base_url}/v1/models/sentence-transformers/all-MiniLM-L6-v2", timeout=TIMEOUT).json()
    assert base["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_register_local_folder_target_patch_and_delete(platform, tmp_path):
    base_url, _ = platform
    url = f"{base_url}/v1/customization/targets"
    body = {"namespace": "local", "name": "minilm-copy@v1", "model_uri": bundled_minilm_path().as_uri()}
    created = requests.post(url, json=body, timeout=TIMEOUT)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "ready"
    assert created.json()["base_model"] == "local/minilm-copy"
    again = requests.post(url, json=body, timeout=TIMEOUT)
    assert again.status_code == 409
    assert "local/minilm-copy@v1" in again.json()["detail"]

    not_a_model = requests.post(
        url, json={"namespace": "local", "name": "empty@v1", "model_path": str(tmp_path)}, timeout=TIMEOUT
    )
    assert not_a_model.status_code == 422
    assert str(tmp_path) in not_a_model.json()["detail"]

    patched = requests.patch(f"{url}/local/minilm-copy@v1", json={"enabled": False}, timeout=TIMEOUT)
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False
    config = requests.post(
        f"{base_url}/v1/customization/configs",
        json={"name": "on-disabled", "namespace": NS, "target": "local/minilm-copy@v1"},
        timeout=TIMEOUT,
    )
    assert config.status_code == 200
    assert config.json()["name"] == "on-disabled@v1"
    refused = _post_job(base_url, job_body(f"{NS}/on-disabled@v1", NS, "tiny", max_steps=1))
    assert refused.status_code == 422
    assert "disabled" in refused.json()["detail"]

    bad_patch = requests.patch(f"{url}/local/minilm-copy@v1", json={"enabled": "maybe"}, timeout=TIMEOUT)
    assert bad_patch.status_code == 422
    assert requests.delete(f"{url}/local/minilm-copy@v1", timeout=TIMEOUT).status_code == 204
    assert requests.get(f"{url}/local/minilm-copy@v1", timeout=TIMEOUT).status_code == 404


def test_target_without_usable_weights_is_refused(platform):
    base_url, _ = platform
    response = requests.post(
        f"{base_url}/v1/customization/targets",
        json={"namespace": "nvidia", "name": "x@v1", "model_uri": "ngc://nvidia/x"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 422
    assert "file:///" in response.json()["detail"]


# ---------------------------------------------------------------------------------------------- configs


def test_config_conflict_and_unknown_target(platform):
    base_url, _ = platform
    url = f"{base_url}/v1/customization/configs"
    again = requests.post(
        url,
        json={"name": "minilm-sft@v1", "namespace": NS, "target": "sentence-transformers/all-minilm-l6-v2@v1"},
        timeout=TIMEOUT,
    )
    assert again.status_code == 409
    assert "minilm-sft@v1" in again.json()["detail"]
    unknown = requests.post(url, json={"name": "c@v1", "namespace": NS, "target": "nvidia/nope@v2"}, timeout=TIMEOUT)
    assert unknown.status_code == 404
    assert "nvidia/nope@v2" in unknown.json()["detail"]
    got = requests.get(f"{url}/{CONFIG}", timeout=TIMEOUT).json()
    assert got["target"] == "sentence-transformers/all-minilm-l6-v2@v1"
    assert got["max_seq_length"] == 64


# ------------------------------------------------------------------------------------------ job bad input


@pytest.mark.parametrize(
    "change, status, needle",
    [
        ({"config": f"{NS}/no-such-config@v1"}, 404, "no-such-config@v1"),
        ({"config": f"{NS}/minilm-sft"}, 422, "needs a version"),
        ({"dataset": {"namespace": NS, "name": "no-such-data"}}, 404, "no-such-data"),
        ({"output_model": f"{NS}/out@v3"}, 422, "must not carry a version"),
    ],
)
def test_job_references_are_checked(platform, change, status, needle):
    base_url, _ = platform
    response = _post_job(base_url, {**job_body(CONFIG, NS, "tiny"), **change})
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


@pytest.mark.parametrize(
    "hyperparameters, field",
    [
        ({"epochs": -1}, "epochs"),
        ({"epochs": "many"}, "epochs"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": -1e-5}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rte": 1e-5}, "learning_rte"),
        ({"optimizer": "sgd"}, "optimizer"),
    ],
)
def test_bad_hyperparameters_are_422_naming_the_field(platform, hyperparameters, field):
    base_url, _ = platform
    response = _post_job(base_url, job_body(CONFIG, NS, "tiny", **hyperparameters))
    assert response.status_code == 422
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"]), response.text


def test_p_tuning_and_bad_lora_are_refused_and_unknown_job_is_404(platform):
    base_url, _ = platform
    response = _post_job(base_url, job_body(CONFIG, NS, "tiny", finetuning_type="p_tuning"))
    assert response.status_code == 422
    assert "finetuning_type" in response.text
    for lora, field in (
        ({"adapter_dim": 0}, "adapter_dim"),
        ({"alpha": 16, "rank": 8}, "rank"),
        ({"adapter_dropout": 1.5}, "adapter_dropout"),
    ):
        response = _post_job(base_url, job_body(CONFIG, NS, "tiny", finetuning_type="lora", lora=lora))
        assert response.status_code == 422, response.text
        assert field in response.text
    # the config offers all_weights only: a lora job on it names the missing training option
    response = _post_job(base_url, job_body(CONFIG, NS, "tiny", finetuning_type="lora"))
    assert response.status_code == 422
    assert "training option" in response.text
    for path in ("", "/status", "/container-logs"):
        missing = requests.get(f"{base_url}/v1/customization/jobs/cust-doesnotexist{path}", timeout=TIMEOUT)
        assert missing.status_code == 404
        assert "cust-doesnotexist" in missing.json()["detail"]


def test_broken_training_rows_fail_the_job_naming_file_and_line(platform):
    base_url, _ = platform
    created = _post_job(base_url, job_body(CONFIG, NS, "broken", max_steps=2))
    assert created.status_code == 200, created.text
    status = wait_for_job(base_url, created.json()["id"], ("completed", "failed", "cancelled"), timeout_s=60)
    assert status["status"] == "failed"
    detail = status["status_logs"][-1]["detail"]
    assert "training/training.jsonl" in detail
    assert "line 4: 'pos_doc' is missing" in detail
    assert "line 5: not valid JSON" in detail
    # The job never got a worker, so no model was registered.
    output_model = requests.get(f"{base_url}/v1/customization/jobs/{created.json()['id']}", timeout=TIMEOUT).json()
    assert requests.get(f"{base_url}/v1/models/{output_model['output_model']}", timeout=TIMEOUT).status_code == 404


# -------------------------------------------------------------------------------------------- real training


@pytest.mark.slow
def test_tiny_training_job_completes_registers_and_serves_a_different_model(platform):
    base_url, settings = platform
    body = job_body(CONFIG, NS, "tiny", max_steps=4, log_every_n_steps=1, seed=7)
    body["custom_fields"] = {"ticket": "EMB-1", "nested": {"k": [1, 2]}}
    body["dataset_parameters"] = {"num_hard_negatives": 1}
    created = _post_job(base_url, body)
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["id"].startswith("cust-")
    assert len(job["id"]) == len("cust-") + 22
    assert job["status"] == "created"
    assert job["output_model"] == f"{NS}/tiny-embedder@{job['id']}"
    assert job["custom_fields"] == body["custom_fields"]
    assert job["hyperparameters"]["max_steps"] == 4
    assert job["hyperparameters"]["learning_rate"] == 5e-5
    assert job["config_snapshot"]["target"]["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert job["created_at"]

    status = wait_for_job(base_url, job["id"], ("completed", "failed", "cancelled"))
    assert status["status"] == "completed", status["status_logs"]
    assert status["steps_completed"] == 4
    assert status["percentage_done"] == 100.0
    assert status["steps_per_epoch"] == 4  # 32 rows at batch 8
    assert status["epochs_completed"] == 1
    assert status["elapsed_time"] > 0
    train = status["metrics"]["metrics"]["train_loss"]
    assert [p["step"] for p in train] == [1, 2, 3, 4]
    assert all(np.isfinite(p["value"]) and p["value"] >= 0 for p in train)
    assert status["metrics"]["metrics"]["val_loss"][-1]["step"] == 4
    assert status["train_loss"] == train[-1]["value"]
    assert status["val_loss"] is not None
    messages = [entry["message"] for entry in status["status_logs"]]
    assert messages[:4] == ["created", "TrainingJobPending", "TrainingJobRunning", "TrainingJobCompleted"]

    got = requests.get(f"{base_url}/v1/customization/jobs/{job['id']}", timeout=TIMEOUT).json()
    assert got["custom_fields"] == body["custom_fields"]
    assert got["status"] == "completed"
    listed = requests.get(
        f"{base_url}/v1/customization/jobs",
        params={"filter[status]": "completed", "sort": "-created_at"},
        timeout=TIMEOUT,
    ).json()
    assert job["id"] in [j["id"] for j in listed["data"]]
    logs = requests.get(f"{base_url}/v1/customization/jobs/{job['id']}/container-logs", timeout=TIMEOUT).json()
    worker_log = logs["entries"]["training-worker"]["logs"]["text"]
    assert "training rows: 32" in worker_log
    # The config's training_precision (bf16) is honoured where the hardware computes bf16 natively, CPUs included.
    assert f"training precision: {'bf16 mixed' if bf16_supported('cpu') else 'fp32'} (requested bf16)" in worker_log

    model = requests.get(f"{base_url}/v1/models/{job['output_model']}", timeout=TIMEOUT)
    assert model.status_code == 200
    assert model.json()["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    # Trained at max_seq_length 64 (the config), saved with the base model's own serving length (256).
    saved = SentenceTransformer(str(settings.models_dir / job["id"]), device="cpu", local_files_only=True)
    assert saved.max_seq_length == 256

    tuned = deploy(base_url, NS, "tuned", job["output_model"])
    base = deploy(base_url, NS, "base", "sentence-transformers/all-MiniLM-L6-v2")
    assert tuned["status_details"]["status"] == base["status_details"]["status"] == "ready"
    texts = ["recent findings on protein folding", "A review of glacier retreat in glaciology."]
    tuned_vectors = np.array(
        [d["embedding"] for d in embeddings(base_url, f"{NS}/tiny-embedder", texts).json()["data"]]
    )
    base_vectors = np.array(
        [d["embedding"] for d in embeddings(base_url, "sentence-transformers/all-MiniLM-L6-v2", texts).json()["data"]]
    )
    assert tuned_vectors.shape == base_vectors.shape == (2, 384)
    assert not np.allclose(tuned_vectors, base_vectors, atol=1e-4)


@pytest.mark.slow
def test_lora_and_lora_merged_train_with_peft_and_serve(platform):
    """``lora`` saves an adapter (served on top of its base), ``lora_merged`` merged full weights; both serve
    embeddings that differ from the base model's."""
    base_url, _ = platform
    options = [
        {"training_type": "sft", "finetuning_type": t, "num_gpus": 1, "micro_batch_size": 8}
        for t in ("lora", "lora_merged")
    ]
    response = requests.post(
        f"{base_url}/v1/customization/configs",
        json={
            "name": "minilm-lora@v1",
            "namespace": NS,
            "target": "sentence-transformers/all-minilm-l6-v2@v1",
            "training_options": options,
            "training_precision": "bf16",
            "max_seq_length": 64,
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    texts = ["recent findings on protein folding", "A review of glacier retreat in glaciology."]
    base = deploy(base_url, NS, "lora-base", "sentence-transformers/all-MiniLM-L6-v2")
    assert base["status_details"]["status"] == "ready"
    base_vectors = np.array(
        [d["embedding"] for d in embeddings(base_url, "sentence-transformers/all-MiniLM-L6-v2", texts).json()["data"]]
    )
    for finetuning_type in ("lora", "lora_merged"):
        name = f"tiny-{finetuning_type.replace('_', '-')}"
        body = job_body(
            f"{NS}/minilm-lora@v1",
            NS,
            "tiny",
            finetuning_type=finetuning_type,
            max_steps=3,
            learning_rate=1e-3,
            seed=7,
            lora={"adapter_dim": 4, "alpha": 8, "target_modules": ["linear_qkv"]},
        )
        body["output_model"] = f"{NS}/{name}"
        created = _post_job(base_url, body)
        assert created.status_code == 200, created.text
        job = created.json()
        assert job["hyperparameters"]["lora"] == {"adapter_dim": 4, "alpha": 8, "target_modules": ["linear_qkv"]}
        status = wait_for_job(base_url, job["id"], ("completed", "failed", "cancelled"))
        assert status["status"] == "completed", status["status_logs"]
        logs = requests.get(f"{base_url}/v1/customization/jobs/{job['id']}/container-logs", timeout=TIMEOUT).json()
        trainable = re.search(r"LoRA adapter: ([\d,]+) trainable", logs["entries"]["training-worker"]["logs"]["text"])
        assert trainable, logs
        assert int(trainable.group(1).replace(",", "")) == 6 * 3 * (384 + 384) * 4  # layers x q,k,v x (A + B) x rank

        model = requests.get(f"{base_url}/v1/models/{job['output_model']}", timeout=TIMEOUT).json()
        assert model["peft"] == {"finetuning_type": finetuning_type}
        files = set(os.listdir(model["artifact_path"]))
        if finetuning_type == "lora":
            assert {"adapter_config.json", "adapter_model.safetensors", "modules.json"} <= files
            assert "model.safetensors" not in files
        else:
            assert "model.safetensors" in files
            assert "adapter_config.json" not in files
        served = deploy(base_url, NS, name, job["output_model"])
        assert served["status_details"]["status"] == "ready", served
        tuned = np.array([d["embedding"] for d in embeddings(base_url, f"{NS}/{name}", texts).json()["data"]])
        assert tuned.shape == base_vectors.shape == (2, 384)
        assert not np.allclose(tuned, base_vectors, atol=1e-4)


@pytest.mark.slow
def test_cancel_mid_training_stops_the_worker(platform):
    base_url, _ = platform
    created = _post_job(base_url, job_body(CONFIG, NS, "tiny", epochs=1000, log_every_n_steps=1))
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]
    wait_for(lambda: job_status(base_url, job_id)["steps_completed"] >= 1, 240, f"job {job_id} to train a step")
    # The platform runs in this process (a thread), so its spawned worker is our child.
    worker = next(p for p in multiprocessing.active_children() if p.name == f"train-{job_id}")
    assert worker.is_alive()

    cancel = requests.post(f"{base_url}/v1/customization/jobs/{job_id}/cancel", timeout=TIMEOUT)
    assert cancel.status_code == 200
    assert cancel.json()["status"] in ("cancelling", "cancelled")
    status = wait_for_job(base_url, job_id, ("completed", "failed", "cancelled"), timeout_s=60)
    assert status["status"] == "cancelled"
    assert status["status_logs"][-1]["message"] == "TrainingJobCancelled"
    assert status["steps_completed"] < 1000 * 4
    worker.join(10)
    assert not worker.is_alive()
    assert worker.exitcode is not None
    assert f"train-{job_id}" not in [p.name for p in multiprocessing.active_children()]
    again = requests.post(f"{base_url}/v1/customization/jobs/{job_id}/cancel", timeout=TIMEOUT)
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    output = requests.get(f"{base_url}/v1/customization/jobs/{job_id}", timeout=TIMEOUT).json()["output_model"]
    assert requests.get(f"{base_url}/v1/models/{output}", timeout=TIMEOUT).status_code == 404


@pytest.mark.slow
def test_worker_crash_fails_the_job_with_the_error_text(platform):
    """A target whose folder looks like a model but is not: the worker dies loading it; the job says why."""
    base_url, settings = platform
    fake = settings.cache_dir / "fake-model"  # targets load from the platform's stores only (issue 24, F4)
    fake.mkdir()
    (fake / "config.json").write_text('{"model_type": "no-such-architecture"}')
    target = requests.post(
        f"{base_url}/v1/customization/targets",
        json={"namespace": "local", "name": "fake@v1", "model_path": str(fake)},
        timeout=TIMEOUT,
    )
    assert target.status_code == 200, target.text
    config = requests.post(
        f"{base_url}/v1/customization/configs",
        json={"name": "fake-config@v1", "namespace": NS, "target": "local/fake@v1"},
        timeout=TIMEOUT,
    )
    assert config.status_code == 200, config.text
    created = _post_job(base_url, job_body(f"{NS}/fake-config@v1", NS, "tiny", max_steps=2))
    assert created.status_code == 200, created.text
    status = wait_for_job(base_url, created.json()["id"], ("completed", "failed", "cancelled"))
    assert status["status"] == "failed"
    assert status["status_logs"][-1]["message"] == "TrainingJobFailed"
    assert "no-such-architecture" in status["status_logs"][-1]["detail"]
