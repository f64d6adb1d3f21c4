"""The ``auto`` inference runtime (issue 25): the decision rule, calibrations over the real torch and ONNX Runtime
paths of the packaged all-MiniLM-L6-v2 (timings injected, so that the decision is deterministic), the fall-back to
torch when a runtime's embeddings differ (a real ONNX Runtime whose output a registered runtime class perturbs),
the cache in the platform home, ``platform status`` and an evaluation's metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
import torch
from click.testing import CliRunner
from sentence_transformers import SentenceTransformer

from embed_ft.platform.cli import platform_group
from embed_ft.platform.services import embedding
from embed_ft.platform.services.inference_backend import (
    DEFAULT_RUNTIME,
    RUNTIME_ENV,
    OnnxRuntime,
    backend_of,
    register_runtime,
    runtime_names,
    unregister_runtime,
)
from embed_ft.platform.services.model_weights import bundled_minilm_path
from embed_ft.platform.services.runtime_calibration import _checked_again, resolve_runtime
from embed_ft.platform.services.runtime_choice import RuntimeCalibrations, RuntimeMeasurement, decide
from embed_ft_tests.platform_customizer_helpers import deploy, wait_for
from embed_ft_tests.platform_server import running_platform
from embed_ft_tests.test_platform_evaluator import job_body, write_beir

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def timings(seconds: dict[str, float]) -> Callable[[str, Callable[[], Any]], float]:
    """An injected clock: runs each pass (so each runtime really computes) and reports the given seconds."""

    def clock(name: str, work: Callable[[], Any]) -> float:
        work()
        return seconds[name]

    return clock


def refusing_clock(name: str, work: Callable[[], Any]) -> float:
    raise AssertionError(f"{name} was timed again although its calibration is cached")


def load_minilm() -> SentenceTransformer:
    return SentenceTransformer(str(bundled_minilm_path()), device="cpu", local_files_only=True).eval()


class PerturbedOnnx(OnnxRuntime):
    """ONNX Runtime's real output plus 1e-3 on every hidden state: a runtime whose embeddings differ."""

    name = "onnx-perturbed"

    def apply(self, model, path, device):
        model = super().apply(model, path, device)
        inner = model[0].model

        class Perturbed(torch.nn.Module):
            runtime_name = "onnx-perturbed"

            def __init__(self):
                super().__init__()
                self.inner = inner
                self.config = inner.config

            def forward(self, **features):
                hidden = self.inner(**features)["last_hidden_state"]
                return {"last_hidden_state": hidden + 1e-3 * torch.linspace(-1, 1, hidden.shape[-1])}

        model[0].model = Perturbed()
        return model


@pytest.fixture
def fresh_calibrations(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBED_FT_ONNX_CACHE", str(Path.home() / ".cache" / "embed_ft" / "onnx"))
    RuntimeCalibrations.forget_memory()
    yield RuntimeCalibrations(tmp_path / "runtimes")
    RuntimeCalibrations.forget_memory()


def measured(
    runtime: str, ratio: float | None, diff: float | None, exact: bool = True, error: str | None = None
) -> RuntimeMeasurement:
    return RuntimeMeasurement(runtime, exact, ratio, ratio, diff, error)


def test_the_runtime_names_and_default_are_defined_once():
    assert DEFAULT_RUNTIME == "auto"
    assert runtime_names()[:4] == ("auto", "torch", "onnx", "torch-bf16")


def test_decision_rule_takes_the_fastest_exact_runtime_and_keeps_torch_otherwise():
    torch_row = measured("torch", 1.0, 0.0)
    assert decide([torch_row, measured("onnx", 0.7, 2e-7), measured("torch-bf16", 0.3, 1e-3, exact=False)])[0] == "onnx"
    runtime, reason = decide([torch_row, measured("onnx", 0.95, 2e-7)])
    assert runtime == "torch"
    assert "onnx: 0.95x" in reason
    assert "not at most 0.9x" in reason
    runtime, reason = decide([torch_row, measured("onnx", 0.5, 3e-4)])
    assert runtime == "torch"
    assert "3.0e-04 > 1e-05" in reason
    runtime, reason = decide([torch_row, measured("onnx", None, None, error="RuntimeError: no export")])
    assert runtime == "torch"
    assert "cannot run (RuntimeError: no export)" in reason
    assert decide([torch_row, measured("a", 0.8, 0.0), measured("b", 0.6, 1e-6)])[0] == "b"


@pytest.mark.slow
def test_calibration_picks_onnx_caches_it_in_the_home_and_shows_bf16_beside_it(fresh_calibrations, tmp_path):
    path = bundled_minilm_path()
    clock = timings({"torch": 1.0, "onnx": 0.6, "torch-bf16": 0.3})
    model, choice = resolve_runtime("auto", path, "cpu", load_minilm, fresh_calibrations, clock=clock, rounds=2)
    assert (choice.runtime, backend_of(model)) == ("onnx", "onnx")
    assert "onnx: 0.60x torch's time" in choice.reason
    onnx = choice.measured("onnx")
    assert onnx is not None
    assert onnx.max_abs_diff is not None
    assert onnx.max_abs_diff <= 1e-5
    files = list((tmp_path / "runtimes").glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["runtime"] == "onnx"
    if choice.measured("torch-bf16") is not None:  # only where the CPU computes bf16 natively
        assert "opt-in torch-bf16" in choice.summary()
        assert "0.30x" in choice.summary()
        _, bf16 = resolve_runtime("torch-bf16", path, "cpu", load_minilm, fresh_calibrations, clock=refusing_clock)
        assert bf16.runtime == "torch-bf16"
        assert "embeddings within 1." in bf16.reason
    # Cached: the next resolution (even from another process: memory dropped) measures nothing.
    RuntimeCalibrations.forget_memory()
    again_model, again = resolve_runtime(
        "auto", path, "cpu", load_minilm, RuntimeCalibrations(tmp_path / "runtimes"), clock=refusing_clock
    )
    assert again.runtime == "onnx"
    assert backend_of(again_model) == "onnx"
    exact, why = resolve_runtime("torch", path, "cpu", load_minilm, fresh_calibrations, clock=refusing_clock)
    assert backend_of(exact) == "torch"
    assert why.reason == f"BEIR's own computation ({RUNTIME_ENV}=torch)"


@pytest.mark.slow
def test_a_runtime_whose_embeddings_differ_is_refused_and_torch_kept(fresh_calibrations):
    register_runtime(PerturbedOnnx())
    try:
        clock = timings({"torch": 1.0, "onnx": 0.95, "onnx-perturbed": 0.2, "torch-bf16": 0.5})
        model, choice = resolve_runtime(
            "auto", bundled_minilm_path(), "cpu", load_minilm, fresh_calibrations, clock=clock, rounds=1
        )
    finally:
        unregister_runtime("onnx-perturbed")
    perturbed = choice.measured("onnx-perturbed")
    assert perturbed is not None
    assert perturbed.max_abs_diff is not None
    assert perturbed.max_abs_diff > 1e-5
    assert (choice.runtime, backend_of(model)) == ("torch", "torch")
    assert "onnx-perturbed: 0.20x" in choice.reason
    assert "> 1e-05" in choice.reason
    assert "onnx: 0.95x" in choice.reason  # the exact one was not fast enough to replace torch


@pytest.mark.slow
def test_auto_is_the_default_of_deployments_status_and_evaluation_metadata(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    # A platform serves one home per process; earlier tests of this process deployed the same weights from other
    # homes, and a model already in the in-process cache is not calibrated (nor recorded) for this home again.
    embedding.unload_model(bundled_minilm_path())
    beir_root = tmp_path / "beir"
    write_beir(beir_root / "tiny")
    with running_platform(tmp_path, beir_root=beir_root) as (base_url, settings):
        doc = deploy(base_url, "rt", "base", BASE_MODEL)
        assert doc["status_details"]["status"] == "ready", doc
        served = embedding.load_model(bundled_minilm_path(), "cpu", RuntimeCalibrations(settings.runtimes_dir))
        choice = embedding.runtime_choice(served)
        assert choice is not None
        assert choice.setting == "auto"
        assert f"by {choice.runtime} (setting auto)" in doc["status_details"]["description"]
        body = job_body(f"{settings.nim_url}/v1/embeddings")
        for side in ("query_embedding_model", "index_embedding_model"):
            body["target"]["retriever"]["pipeline"][side]["api_endpoint"]["model_id"] = BASE_MODEL
        created = requests.post(f"{base_url}/v1/evaluation/jobs", json=body, timeout=30)
        assert created.status_code == 200, created.text

        def finished():
            job = requests.get(f"{base_url}/v1/evaluation/jobs/{created.json()['id']}", timeout=30).json()
            return job if job["status"] in ("completed", "failed", "cancelled") else None

        job = wait_for(finished, 300, "the evaluation job")
        assert job["status"] == "completed", job["status_details"]
        runtime = job["status_details"]["task_details"]["my-beir-task"]["runtime"]
        assert runtime["query"]["runtime"] == runtime["index"]["runtime"] == choice.runtime
        assert runtime["query"]["reason"] == choice.reason
        assert "torch" in runtime["query"]["measurements"]
        status = CliRunner().invoke(platform_group, ["status", "--home", str(settings.home)])
        assert "inference runtime: auto" in status.output
        assert f"auto -> {choice.runtime} (setting auto): {choice.reason}" in status.output


@pytest.mark.slow
def test_a_cached_choice_is_checked_again_on_other_weights_and_refused_when_they_differ(fresh_calibrations):
    models = {"torch": load_minilm()}
    runtime, reason = _checked_again(
        "onnx-perturbed",
        "cached reason",
        PerturbedOnnx(),
        bundled_minilm_path(),
        "cpu",
        load_minilm,
        models,
        check=True,
    )
    assert runtime == "torch"
    assert "onnx-perturbed's embeddings of these weights differ from torch fp32's" in reason
    runtime, reason = _checked_again(
        "onnx", "cached reason", OnnxRuntime(), bundled_minilm_path(), "cpu", load_minilm, models, check=True
    )
    assert runtime == "onnx"
    assert reason.startswith("cached reason; these weights checked again: within ")
