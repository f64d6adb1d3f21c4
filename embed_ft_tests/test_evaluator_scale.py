"""Evaluator at scale: streamed exact top-k over a memory-mapped embedding cache, the approximate (faiss) switch,
and the ONNX Runtime inference backend against the torch path (issue 15, items 4 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embed_ft.platform.services import inference_backend
from embed_ft.platform.services.evaluation import CallableEmbedder, EmbeddingCache, evaluate_retrieval, load_beir_folder
from embed_ft.platform.services.evaluation.errors import EvaluationError
from embed_ft.platform.services.evaluation.retrieval import SearchSettings, exact_search, search
from embed_ft.platform.services.model_weights import bundled_minilm_path

DIM = 32


def clustered(n_docs: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n_docs // 50), DIM)).astype(np.float32)
    docs = centres[rng.integers(0, len(centres), n_docs)] + 0.3 * rng.standard_normal((n_docs, DIM)).astype(np.float32)
    queries = docs[rng.choice(n_docs, n_queries, replace=False)] + 0.2 * rng.standard_normal((n_queries, DIM)).astype(
        np.float32
    )
    return docs, queries


def brute_force_top(queries: np.ndarray, docs: np.ndarray, k: int) -> list[list[int]]:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    return [list(np.argsort(-row, kind="stable")[:k]) for row in q @ d.T]


def test_exact_search_streams_chunks_of_a_memory_mapped_cache(tmp_path):
    docs, queries = clustered(3_000, 40)
    doc_ids = [f"d{i}" for i in range(len(docs))]
    query_ids = [f"q{i}" for i in range(len(queries))]
    probe = np.ones((4, DIM), dtype=np.float32)
    cache = EmbeddingCache(tmp_path / "cache")
    cache.save("corpus", doc_ids, docs, probe)
    mapped = cache.load("corpus", doc_ids, probe)
    assert isinstance(mapped, np.memmap)
    assert not mapped.flags.writeable
    assert cache.load("corpus", doc_ids[::-1], probe) is None  # other ids (or order): a miss
    assert cache.load("corpus", doc_ids, probe + 1) is None  # the endpoint answers differently: a miss

    streamed = exact_search(queries, query_ids, mapped, doc_ids, 10, corpus_chunk_size=256)
    whole = exact_search(queries, query_ids, docs, doc_ids, 10, corpus_chunk_size=len(docs))
    assert streamed == whole
    expected = brute_force_top(queries, docs, 10)
    for qid, top in zip(query_ids, expected, strict=True):
        ranked = sorted(streamed[qid], key=lambda d: -streamed[qid][d])
        assert ranked == [doc_ids[i] for i in top]


def test_approximate_search_recall_and_the_switch(tmp_path):
    pytest.importorskip("faiss")
    docs, queries = clustered(20_000, 100)
    doc_ids = [f"d{i}" for i in range(len(docs))]
    query_ids = [f"q{i}" for i in range(len(queries))]
    exact, method = search(queries, query_ids, docs, doc_ids, 10, SearchSettings(mode="exact"))
    assert method == "exact"
    approx, method = search(queries, query_ids, docs, doc_ids, 10, SearchSettings(mode="approximate", nprobe=32))
    assert method == "approximate"
    found = sum(len(set(approx[q]) & set(exact[q])) for q in query_ids)
    assert found / (10 * len(query_ids)) >= 0.99
    # auto: exact below the threshold, approximate from it.
    assert search(queries, query_ids, docs, doc_ids, 10, SearchSettings(approximate_min_docs=20_001))[1] == "exact"
    assert (
        search(queries, query_ids, docs, doc_ids, 10, SearchSettings(approximate_min_docs=20_000))[1] == "approximate"
    )


def test_search_settings_from_the_environment(monkeypatch):
    assert SearchSettings.from_env() == SearchSettings()
    monkeypatch.setenv("EMBED_FT_EVAL_SEARCH", "exact")
    monkeypatch.setenv("EMBED_FT_EVAL_APPROX_MIN_DOCS", "123")
    monkeypatch.setenv("EMBED_FT_EVAL_NPROBE", "7")
    assert SearchSettings.from_env() == SearchSettings(mode="exact", approximate_min_docs=123, nprobe=7)
    monkeypatch.setenv("EMBED_FT_EVAL_SEARCH", "fast")
    with pytest.raises(EvaluationError, match="search mode must be one of auto, exact, approximate"):
        SearchSettings.from_env()


# ------------------------------------------------------------------------------------------ inference backend


def scifact_test_subset(scifact: Path, out: Path, n_queries: int = 15, n_docs: int = 120) -> Path:
    qrels = (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]
    chosen: dict[str, list[str]] = {}
    for line in qrels:
        q, d, _ = line.split("\t")
        if q in chosen or len(chosen) < n_queries:
            chosen.setdefault(q, []).append(d)
    judged = {d for docs in chosen.values() for d in docs}
    corpus = [json.loads(line) for line in (scifact / "corpus.jsonl").read_text().splitlines()]
    kept = [doc for doc in corpus if doc["_id"] in judged] + [doc for doc in corpus if doc["_id"] not in judged][
        :n_docs
    ]
    queries = [q for q in map(json.loads, (scifact / "queries.jsonl").read_text().splitlines()) if q["_id"] in chosen]
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in kept))
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (out / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, docs in chosen.items() for d in docs)
    )
    return out


@pytest.mark.slow  # an ONNX export and two evaluations of a SciFact subset: 183 s on the shared machine
def test_onnx_backend_matches_torch_within_1e4(tmp_path, monkeypatch, shared_data):
    pytest.importorskip("onnxruntime")
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv(inference_backend.ONNX_CACHE_ENV, str(tmp_path / "onnx"))
    path = str(bundled_minilm_path())
    torch_model = SentenceTransformer(path, device="cpu")
    onnx_model = inference_backend.apply_backend(SentenceTransformer(path, device="cpu"), path, "cpu", "onnx")
    assert (inference_backend.backend_of(torch_model), inference_backend.backend_of(onnx_model)) == ("torch", "onnx")
    exported = next((tmp_path / "onnx").rglob("model.onnx"))
    stamp = exported.stat().st_mtime_ns
    inference_backend.apply_backend(SentenceTransformer(path, device="cpu"), path, "cpu", "onnx")
    assert exported.stat().st_mtime_ns == stamp  # exported once per set of weights

    dataset = load_beir_folder(scifact_test_subset(shared_data / "beir" / "scifact", tmp_path / "beir"))
    metrics = ["ndcg_cut_10", "recall_10", "map_cut_10"]
    results = {}
    for name, model in (("torch", torch_model), ("onnx", onnx_model)):
        embedder = CallableEmbedder(
            lambda texts, _, m=model: m.encode(texts, batch_size=32), {"kind": name}, batch_size=32
        )
        results[name] = evaluate_retrieval(
            dataset, embedder, embedder, metrics, 10, search_settings=SearchSettings(mode="exact")
        )
    for metric in metrics:
        assert results["onnx"].metrics[metric] == pytest.approx(results["torch"].metrics[metric], abs=1e-4)
    texts = dataset.query_texts[:8]
    assert np.abs(onnx_model.encode(texts) - torch_model.encode(texts)).max() < 1e-5


def test_backend_setting(monkeypatch):
    monkeypatch.delenv(inference_backend.BACKEND_ENV, raising=False)
    assert inference_backend.requested_backend() == "auto"
    monkeypatch.setenv(inference_backend.BACKEND_ENV, "TORCH")
    assert inference_backend.requested_backend() == "torch"
    monkeypatch.setenv(inference_backend.BACKEND_ENV, "tensorrt")
    with pytest.raises(inference_backend.InferenceBackendError, match="must be one of auto, torch, onnx, torch-bf16"):
        inference_backend.requested_backend()
