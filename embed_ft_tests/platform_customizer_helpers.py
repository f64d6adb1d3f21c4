"""Helpers for the Customizer / Deployment / NIM tests: tiny datasets, uploads, bounded polling."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from huggingface_hub import HfApi

from embed_ft.platform.settings import service_urls

TIMEOUT = (5, 60)  # connect, read seconds of every request

TOPICS = [
    ("protein folding", "molecular biology"),
    ("graph neural networks", "machine learning"),
    ("dark matter halos", "astrophysics"),
    ("coral reef bleaching", "marine ecology"),
    ("lithium battery anodes", "materials science"),
    ("malaria vaccines", "immunology"),
    ("quantum error correction", "quantum computing"),
    ("soil carbon storage", "agronomy"),
    ("earthquake early warning", "seismology"),
    ("language acquisition", "linguistics"),
    ("urban heat islands", "climatology"),
    ("antibiotic resistance", "microbiology"),
    ("solar cell perovskites", "photovoltaics"),
    ("sleep and memory", "neuroscience"),
    ("glacier retreat", "glaciology"),
    ("price elasticity", "economics"),
]


def make_triplets(count: int, offset: int = 0) -> list[dict[str, Any]]:
    """Distinct (query, pos_doc, neg_doc) rows in the NeMo training format (one hard negative each)."""
    rows = []
    for i in range(offset, offset + count):
        topic, field = TOPICS[i % len(TOPICS)]
        other_topic, other_field = TOPICS[(i + 5) % len(TOPICS)]
        rows.append(
            {
                "query": f"recent findings on {topic} (question {i})",
                "pos_doc": f"We study {topic} in {field}; experiment {i} reports new measurements.",
                "neg_doc": [f"A review of {other_topic} in {other_field}, part {i}."],
            }
        )
    return rows


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def upload_dataset(
    base_url: str, namespace: str, name: str, training_text: str, validation_text: str | None, tmp_dir: Path
) -> None:
    """Create the namespaces, upload the NeMo layout with huggingface_hub, register the Entity Store dataset."""
    requests.post(f"{base_url}/v1/namespaces", json={"id": namespace}, timeout=TIMEOUT)
    requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": namespace}, timeout=TIMEOUT)
    folder = tmp_dir / f"upload-{namespace}-{name}"
    (folder / "training").mkdir(parents=True)
    (folder / "training" / "training.jsonl").write_text(training_text, encoding="utf-8")
    if validation_text is not None:
        (folder / "validation").mkdir()
        (folder / "validation" / "validation.jsonl").write_text(validation_text, encoding="utf-8")
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:  # the suite runs offline; the loopback Data Store is allowed
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        mp.setenv("HF_HUB_DISABLE_XET", "1")
        api = HfApi(endpoint=f"{base_url}/v1/hf", token=False)
        api.create_repo(f"{namespace}/{name}", repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id=f"{namespace}/{name}", repo_type="dataset", folder_path=folder)
    response = requests.post(
        f"{base_url}/v1/datasets",
        json={
            "name": name,
            "namespace": namespace,
            "files_url": f"hf://datasets/{namespace}/{name}",
            "description": "test triplets",
        },
        timeout=TIMEOUT,
    )
    assert response.status_code in (200, 201), response.text


def create_config(base_url: str, namespace: str, name: str = "minilm-sft@v1") -> dict[str, Any]:
    response = requests.post(
        f"{base_url}/v1/customization/configs",
        json={
            "name": name,
            "namespace": namespace,
            "target": "sentence-transformers/all-minilm-l6-v2@v1",
            "training_options": [
                {"training_type": "sft", "finetuning_type": "all_weights", "num_gpus": 1, "micro_batch_size": 8}
            ],
            "training_precision": "bf16",
            "max_seq_length": 64,
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def job_body(config: str, namespace: str, dataset: str, **hyperparameters: Any) -> dict[str, Any]:
    return {
        "name": "tiny-sft",
        "config": config,
        "dataset": {"namespace": namespace, "name": dataset},
        "hyperparameters": {
            "training_type": "sft",
            "finetuning_type": "all_weights",
            "epochs": 1,
            "batch_size": 8,
            "learning_rate": 5e-5,
            **hyperparameters,
        },
        "output_model": f"{namespace}/tiny-embedder",
    }


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last value: {last!r}")


def job_status(base_url: str, job_id: str) -> dict[str, Any]:
    response = requests.get(f"{base_url}/v1/customization/jobs/{job_id}/status", timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


def wait_for_job(base_url: str, job_id: str, statuses: tuple[str, ...], timeout_s: float = 240) -> dict[str, Any]:
    return wait_for(
        lambda: (s := job_status(base_url, job_id))["status"] in statuses and s,
        timeout_s,
        f"job {job_id} to reach {statuses}",
    )


def deploy(base_url: str, namespace: str, name: str, model: str, timeout_s: float = 120) -> dict[str, Any]:
    """Create an inline deployment and wait until it is ready (or failed); returns the final document."""
    response = requests.post(
        f"{base_url}/v1/deployment/model-deployments",
        json={
            "name": name,
            "namespace": namespace,
            "config": {
                "model": model,
                "nim_deployment": {"image_name": "local", "image_tag": "1", "gpu": 1, "disable_lora_support": True},
            },
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status_details"]["status"] == "pending"

    def settled():
        doc = requests.get(f"{base_url}/v1/deployment/model-deployments/{namespace}/{name}", timeout=TIMEOUT).json()
        return doc if doc["status_details"]["status"] in ("ready", "failed") else None

    return wait_for(settled, timeout_s, f"deployment {namespace}/{name} to settle")


def embeddings(base_url: str, model: str, texts: list[str] | str, **extra: Any) -> requests.Response:
    """``POST {NIM_URL}/v1/embeddings`` of the platform at ``base_url`` (NEMO_URL)."""
    return requests.post(
        f"{service_urls(base_url)['NIM_URL']}/v1/embeddings",
        json={"model": model, "input": texts, **extra},
        timeout=TIMEOUT,
    )
