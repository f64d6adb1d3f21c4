"""Evaluator: BEIR loading, the embeddings client, exact search, trec_eval metrics, the cache, and jobs over HTTP.

Embeddings come from a small OpenAI/NIM-compatible server on 127.0.0.1 (hashed bag of words: deterministic,
and good enough to rank a tiny corpus), so every test exercises the real HTTP client. Results are checked
against pytrec_eval run independently on a ranking computed here with numpy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
import requests
from fastapi.testclient import TestClient

from embed_ft.platform.app import create_app
from embed_ft.platform.services import evaluation
from embed_ft.platform.services.evaluation import (
    CallableEmbedder,
    DatasetNotFound,
    EmbeddingCache,
    EmbeddingEndpointError,
    EndpointEmbedder,
    EvaluationError,
)
from embed_ft.platform.settings import PlatformSettings
from embed_ft_tests.platform_server import hub_online, running_platform  # noqa: F401  (fixture)

DIM = 48
METRICS = [
    "recall_1",
    "recall_5",
    "recall_10",
    "ndcg_cut_3",
    "ndcg_cut_5",
    "ndcg_cut_10",
    "map",
    "recip_rank",
    "P_2",
    "map_cut_5",
]
NEMO_METRICS = {m: {"type": m} for m in ("recall_5", "ndcg_cut_5", "recall_10", "ndcg_cut_10")}
TERMINAL = ("completed", "failed", "cancelled")


# --------------------------------------------------------------------------------------------- fake endpoint


def hashed_bow(text: str, salt: str = "") -> np.ndarray:
    """A deterministic embedding: each lower-cased word adds +-1 to a hashed dimension, plus a small
    text-specific component so that different texts never tie (rankings are then unambiguous)."""
    vector = np.zeros(DIM, dtype=np.float32)
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.sha1((salt + word).encode()).digest()
        vector[digest[0] % DIM] += 1.0 if digest[1] % 2 else -1.0
    seed = int.from_bytes(hashlib.sha256((salt + text).encode()).digest()[:8], "little")
    vector += 0.05 * np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector


class FakeEmbeddings:
    """State and knobs of the fake server; tests read the counters and flip the knobs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.texts_by_type: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.salt = ""  # a different salt is a different model behind the same URL
        self.delay_s = 0.0
        self.nan = False
        self.float_only = False  # refuse encoding_format=base64 with 400, like some OpenAI-compatible servers
        self.status: int | None = None
        self.required_key: str | None = None

    def count(self, input_type: str | None) -> int:
        """Texts embedded for ``input_type``, not counting the cache's fixed probe texts."""
        return self.texts_by_type.get(input_type or "none", 0)


def _handler(state: FakeEmbeddings):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            with state.lock:
                state.requests += 1
                state.bodies.append({k: v for k, v in body.items() if k != "input"} | {"n": len(texts)})
                kind = body.get("input_type") or "none"
                counted = sum(1 for t in texts if t not in evaluation.PROBE_TEXTS)
                state.texts_by_type[kind] = state.texts_by_type.get(kind, 0) + counted
            if state.delay_s:
                time.sleep(state.delay_s)
            if state.required_key and self.headers.get("Authorization") != f"Bearer {state.required_key}":
                return self._send(401, {"detail": "invalid api key"})
            if state.status:
                return self._send(state.status, {"detail": "server is unhappy"})
            if state.float_only and body.get("encoding_format") == "base64":
                return self._send(400, {"detail": "encoding_format base64 is not supported"})
            vectors = [hashed_bow(t, state.salt) for t in texts]
            if state.nan:
                vectors[0][0] = np.nan
            if body.get("encoding_format") == "base64":
                data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
            else:
                data = [v.tolist() for v in vectors]
            rows = [{"index": i, "embedding": e, "object": "embedding"} for i, e in enumerate(data)]
            self._send(200, {"object": "list", "data": rows[::-1], "model": body["model"], "usage": {}})

    return Handler


@contextmanager
def fake_embeddings_server():
    state = FakeEmbeddings()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/embeddings", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def endpoint():
    with fake_embeddings_server() as (url, state):
        yield url, state


# --------------------------------------------------------------------------------------------- tiny BEIR sets

TOPICS = {
    "protein": "protein folding amino acid chains tertiary structure",
    "graph": "graph neural networks message passing node classification",
    "climate": "climate ocean circulation carbon cycle aerosol forcing",
    "quantum": "quantum qubit error correction superconducting circuits",
    "speech": "speech recognition acoustic models transducers noisy audio",
    "cancer": "cancer immunotherapy checkpoint inhibitors tumour cells",
}


def write_beir(folder: Path, *, docs_per_topic: int = 4, skip: tuple[str, ...] = ()) -> Path:
    """A BEIR set with graded judgements, a judged document missing from the corpus, and a query whose id is
    also a document id (BEIR never retrieves a document for the query with its own id)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = [], [], []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for d in range(docs_per_topic):
            picked = " ".join(vocab[(d + i) % len(vocab)] for i in range(4))
            corpus.append({"_id": f"{topic}-{d}", "title": f"{topic.title()} study {d}", "text": f"On {picked}."})
        queries.append({"_id": f"q-{topic}", "text": f"{vocab[0]} {vocab[1]} {vocab[3]}", "metadata": {}})
        qrels += [(f"q-{topic}", f"{topic}-0", 2), (f"q-{topic}", f"{topic}-1", 1)]
    corpus.append({"_id": "q-protein", "title": "", "text": "protein folding amino acid chains"})  # same id as a query
    corpus.append({"_id": "untitled", "text": "a document without title about speech audio"})
    qrels.append(("q-graph", "not-in-corpus", 1))
    queries.append({"_id": "q-unjudged", "text": "never evaluated"})
    files = {
        "corpus.jsonl": "".join(json.dumps(d) + "\n" for d in corpus),
        "queries.jsonl": "".join(json.dumps(q) + "\n" for q in queries),
        "qrels/test.tsv": "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels),
    }
    for rel, text in files.items():
        if rel not in skip:
            (folder / rel).write_text(text)
    return folder


def independent_reference(folder: Path, top_k: int, metrics: list[str], salt: str = "") -> tuple[dict, dict]:
    """Ranking with plain numpy + pytrec_eval, written without evaluation.py: (run, mean metrics)."""
    docs = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    doc_ids = [d["_id"] for d in docs]
    doc_vectors = np.stack([hashed_bow(((d.get("title") or "") + " " + d["text"]).strip(), salt) for d in docs])
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())}
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    doc_vectors /= np.linalg.norm(doc_vectors, axis=1, keepdims=True)
    run = {}
    for qid in qrels:
        qv = hashed_bow(queries[qid], salt)
        scores = doc_vectors @ (qv / np.linalg.norm(qv))
        ranked = [i for i in np.argsort(-scores, kind="stable") if doc_ids[i] != qid][:top_k]
        run[qid] = {doc_ids[i]: float(scores[i]) for i in ranked}
    measures = {"recall.1,5,10", "ndcg_cut.3,5,10", "map", "recip_rank", "P.2", "map_cut.5"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    means = {m: float(np.mean([scores[m] for scores in per_query.values()])) for m in metrics}
    return run, means


def bow_embedder(salt: str = "", batch_size: int = 5) -> CallableEmbedder:
    return CallableEmbedder(
        lambda texts, _: np.stack([hashed_bow(t, salt) for t in texts]),
        identity={"kind": "test-bow", "salt": salt},
        batch_size=batch_size,
    )


# --------------------------------------------------------------------------------------------- engine


def test_metric_names_are_parsed_and_unknown_ones_rejected():
    assert evaluation.parse_metric("recall_5") == ("recall", 5)
    assert evaluation.parse_metric("ndcg_cut_10") == ("ndcg_cut", 10)
    assert evaluation.parse_metric("map") == ("map", None)
    assert evaluation.pytrec_measures(["recall_5", "recall_10", "ndcg_cut_5", "map"]) == {
        "recall.5,10",
        "ndcg_cut.5",
        "map",
    }
    for bad in ("recall", "recall_0", "ndcg_5", "mrr", "recall_5x", "NDCG@10"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            evaluation.parse_metric(bad)


def test_beir_loading_follows_beir_conventions(tmp_path):
    dataset = evaluation.load_beir_folder(write_beir(tmp_path / "tiny"), source="file://tiny/")
    # Queries: exactly those of the qrels, in qrels order; documents: longest first, BEIR's text format.
    assert dataset.query_ids == [f"q-{t}" for t in TOPICS]
    lengths = [len(t) for t in dataset.corpus_texts]
    assert dataset.num_docs == 26
    assert lengths[0] == max(lengths)
    assert "Protein study 0 On protein folding amino acid." in dataset.corpus_texts
    assert "a document without title about speech audio" in dataset.corpus_texts  # no leading space
    assert dataset.qrels["q-protein"] == {"protein-0": 2, "protein-1": 1}


def test_results_equal_pytrec_eval_on_an_independent_ranking(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    dataset = evaluation.load_beir_folder(folder)
    outcome = evaluation.evaluate_retrieval(dataset, bow_embedder(), bow_embedder(), METRICS, top_k=10)
    run, expected = independent_reference(folder, top_k=10, metrics=METRICS)
    assert {q: set(d) for q, d in outcome.run.items()} == {q: set(d) for q, d in run.items()}
    assert "q-protein" not in outcome.run["q-protein"]  # the document with the query's id is never retrieved
    for name in METRICS:
        assert outcome.metrics[name] == pytest.approx(expected[name], abs=1e-9), name
    assert 0 < outcome.metrics["ndcg_cut_10"] < 1
    assert outcome.metrics["recall_10"] < 1


def test_metric_cutoff_deeper_than_top_k_widens_the_search(tmp_path):
    dataset = evaluation.load_beir_folder(write_beir(tmp_path / "tiny"))
    outcome = evaluation.evaluate_retrieval(dataset, bow_embedder(), bow_embedder(), ["recall_20"], top_k=3)
    assert outcome.top_k == 20
    assert all(len(docs) == 20 for docs in outcome.run.values())


@pytest.mark.parametrize(
    "skip, missing",
    [(("qrels/test.tsv",), "qrels/test.tsv"), (("corpus.jsonl", "queries.jsonl"), "corpus.jsonl, queries.jsonl")],
)
def test_missing_files_name_the_file_and_folder(tmp_path, skip, missing):
    folder = write_beir(tmp_path / "beir" / "tiny", skip=skip)
    with pytest.raises(DatasetNotFound) as err:
        evaluation.load_beir_dataset("file://tiny/", tmp_path / "beir", allow_download=False)
    assert missing in str(err.value)
    assert str(folder) in str(err.value)


def test_missing_folder_offline_names_the_folder_to_fill(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotFound, match="offline") as err:
        evaluation.load_beir_dataset("file://scidocs/", tmp_path / "beir")
    assert str(tmp_path / "beir" / "scidocs") in str(err.value)


@pytest.mark.parametrize(
    "corpus, queries, qrels, message",
    [
        (
            '{"_id": "d1", "text": "x"}\n{broken\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq1\td1\t1\n",
            "corpus.jsonl line 2: not valid JSON",
        ),
        (
            '{"text": "x"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq1\td1\t1\n",
            "corpus.jsonl line 1: expected an object with an `_id` field",
        ),
        (
            '{"_id": "d1", "text": "x"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq1\td1\n",
            "qrels/test.tsv line 2: expected 3 tab-separated columns",
        ),
        (
            '{"_id": "d1", "text": "x"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq1\td1\thigh\n",
            "qrels/test.tsv line 2: score 'high' is not a number",
        ),
        (
            '{"_id": "d1", "text": "x"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq9\td1\t1\n",
            "query id(s) missing from queries.jsonl: 'q9'",
        ),
    ],
)
def test_broken_beir_files_get_errors_naming_file_and_line(corpus, queries, qrels, message):
    with pytest.raises(EvaluationError, match=re.escape(message)):
        evaluation.parse_beir(corpus.encode(), queries.encode(), qrels.encode(), source="t", location="t")


@pytest.mark.parametrize(
    "url", ["s3://bucket/x", "file://../etc/", "hf://models/a/b", "hf://datasets/a", "file:///abs/"]
)
def test_bad_files_urls_are_refused(url):
    with pytest.raises(EvaluationError, match="files_url"):
        evaluation.validate_files_url(url)


# --------------------------------------------------------------------------------------------- endpoint client


def test_endpoint_embedder_decodes_base64_and_sends_nim_fields(endpoint):
    url, state = endpoint
    texts = ["short", "a much longer text about proteins", "medium text here"]
    vectors = EndpointEmbedder(url, "ns/model", format="nim", batch_size=2).embed(texts, "query")
    np.testing.assert_array_equal(vectors, np.stack([hashed_bow(t) for t in texts]))
    assert state.requests == 2
    assert state.bodies[0]["encoding_format"] == "base64"
    assert state.bodies[0]["input_type"] == "query"
    assert state.bodies[0]["truncate"] == "END"
    assert state.bodies[0]["n"] == 2


def test_openai_format_omits_input_type_and_falls_back_to_float(endpoint):
    url, state = endpoint
    state.float_only = True
    embedder = EndpointEmbedder(url, "m", format="openai", batch_size=1)
    vectors = embedder.embed(["alpha beta", "gamma"], "passage")
    np.testing.assert_array_equal(vectors, np.stack([hashed_bow("alpha beta"), hashed_bow("gamma")]))
    assert "input_type" not in state.bodies[0]
    # One refused base64 request, then float for the rest of the run.
    assert [b["encoding_format"] for b in state.bodies] == ["base64", "float", "float"]


def test_endpoint_errors_are_clear_and_never_show_the_key(endpoint):
    url, state = endpoint
    state.nan = True
    with pytest.raises(EmbeddingEndpointError, match="NaN or infinity"):
        EndpointEmbedder(url, "m").embed(["x", "y"], "query")
    state.nan = False
    state.required_key = "right-key"
    with pytest.raises(EmbeddingEndpointError, match="HTTP 401.*api_key") as err:
        EndpointEmbedder(url, "m", api_key="wrong-key-123").embed(["x"], "query")
    assert "wrong-key-123" not in str(err.value)
    assert EndpointEmbedder(url, "m", api_key="right-key").embed(["x"], "query").shape == (1, DIM)
    state.required_key, state.status = None, 500
    with pytest.raises(EmbeddingEndpointError, match="HTTP 500: server is unhappy"):
        EndpointEmbedder(url, "m").embed(["x"], "query")
    with pytest.raises(EmbeddingEndpointError, match="ConnectionError"):
        EndpointEmbedder("http://127.0.0.1:9/v1/embeddings", "m", timeout=(1, 1)).embed(["x"], "query")


def test_dimension_change_between_batches_is_an_error():
    calls = iter([np.ones((1, 4)), np.ones((1, 5))])
    embedder = CallableEmbedder(lambda texts, _: next(calls), identity={"kind": "t"}, batch_size=1)
    with pytest.raises(EmbeddingEndpointError, match="changed dimension from 4 to 5"):
        embedder.embed(["a", "b"], "passage")


# --------------------------------------------------------------------------------------------- cache


def test_corpus_cache_skips_the_corpus_pass_and_misses_on_a_changed_model(tmp_path, endpoint):
    url, state = endpoint
    dataset = evaluation.load_beir_folder(write_beir(tmp_path / "tiny"))
    cache = EmbeddingCache(tmp_path / "cache")

    def run():
        embedder = EndpointEmbedder(url, "ns/model", batch_size=4)
        return evaluation.evaluate_retrieval(dataset, embedder, embedder, METRICS, 10, cache=cache)

    first = run()
    passages_embedded = state.count("passage")
    assert passages_embedded == dataset.num_docs
    assert not first.corpus_cache_hit
    second = run()
    assert second.corpus_cache_hit
    assert second.query_cache_hit
    assert state.count("passage") == passages_embedded  # only the probe texts were sent
    assert second.metrics == first.metrics
    state.salt = "retrained"  # same URL and model name, different weights: the probes differ
    third = run()
    assert not third.corpus_cache_hit
    assert state.count("passage") == 2 * passages_embedded
    _, expected = independent_reference(tmp_path / "tiny", 10, METRICS, salt="retrained")
    assert third.metrics["ndcg_cut_10"] == pytest.approx(expected["ndcg_cut_10"], abs=1e-9)


# --------------------------------------------------------------------------------------------- HTTP jobs


def job_body(url: str, files_url: str = "file://tiny/", *, metrics=None, api_key: str = "", **extra) -> dict:
    endpoint_spec = {"api_endpoint": {"url": url, "model_id": "ns/model", "api_key": api_key, "format": "nim"}}
    return {
        "config": {
            "type": "retriever",
            "namespace": "ev",
            "tasks": {
                "my-beir-task": {
                    "type": "beir",
                    "dataset": {"files_url": files_url},
                    "metrics": {name: dict(spec) for name, spec in (metrics or NEMO_METRICS).items()},
                }
            },
        },
        "target": {
            "type": "retriever",
            "retriever": {
                "pipeline": {
                    "query_embedding_model": endpoint_spec,
                    "index_embedding_model": endpoint_spec,
                    "top_k": 10,
                }
            },
        },
        **extra,
    }


def wait_for(client, job_id: str, statuses=TERMINAL, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        doc = client.get(f"/v1/evaluation/jobs/{job_id}").json()
        if doc["status"] in statuses:
            return doc
        assert time.monotonic() < deadline, f"job stuck in {doc['status']}: {doc['status_details']}"
        time.sleep(0.05)


@contextmanager
def platform_client(tmp_path: Path):
    settings = PlatformSettings(home=tmp_path / "home", beir_root=tmp_path / "beir")
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_job_over_http_returns_nemo_results_equal_to_pytrec_eval(tmp_path, endpoint):
    url, state = endpoint
    folder = write_beir(tmp_path / "beir" / "tiny")
    custom = {"experiment": "e1", "nested": {"x": [1, 2]}}
    with platform_client(tmp_path) as (client, _):
        created = client.post("/v1/evaluation/jobs", json=job_body(url, api_key="sk-secret", custom_fields=custom))
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        assert job_id.startswith("eval-")
        assert created.json()["status"] in ("pending", "running", "completed")
        doc = wait_for(client, job_id)
        assert doc["status"] == "completed", doc["status_details"]
        assert doc["status_details"]["progress"] == 100
        assert doc["custom_fields"] == custom
        assert [e["status"] for e in doc["status_logs"]][:3] == ["created", "pending", "running"]
        assert "sk-secret" not in json.dumps(doc)
        results = client.get(f"/v1/evaluation/jobs/{job_id}/results").json()
        job_list = client.get("/v1/evaluation/jobs", params={"page_size": 5}).json()

    assert results["job"] == job_id
    assert results["id"].startswith("evaluation_result-")
    assert results["files_url"] == f"hf://datasets/evaluation-results/{job_id}"
    metrics = results["tasks"]["my-beir-task"]["metrics"]
    assert set(metrics) == {f"retriever.{m}" for m in NEMO_METRICS}
    _, expected = independent_reference(folder, 10, list(NEMO_METRICS))
    for name in NEMO_METRICS:
        score = metrics[f"retriever.{name}"]["scores"][name]
        assert score["stats"] == {}
        assert score["value"] == pytest.approx(expected[name], abs=1e-9)
    assert job_list["data"][0]["id"] == job_id
    assert job_list["pagination"]["total_results"] == 1
    assert state.bodies[0]["input_type"] in ("query", "passage")


def test_second_job_hits_the_cache_and_results_survive_a_restart(tmp_path, endpoint):
    url, state = endpoint
    write_beir(tmp_path / "beir" / "tiny")
    with platform_client(tmp_path) as (client, _):
        first = wait_for(client, client.post("/v1/evaluation/jobs", json=job_body(url)).json()["id"])
        embedded = state.count("passage")
        second = wait_for(client, client.post("/v1/evaluation/jobs", json=job_body(url)).json()["id"])
        assert second["status"] == "completed"
        assert state.count("passage") == embedded  # the corpus pass was skipped
        assert second["status_details"]["task_status"] == {"my-beir-task": "completed"}  # the SDK's TaskStatus
        assert second["status_details"]["task_details"]["my-beir-task"]["corpus_cache_hit"] is True
        before = client.get(f"/v1/evaluation/jobs/{first['id']}/results").json()
    with platform_client(tmp_path) as (client, _):  # a new platform process on the same home
        after = client.get(f"/v1/evaluation/jobs/{first['id']}/results")
        listed = client.get("/v1/evaluation/jobs", params={"sort": "created_at"}).json()["data"]
    assert after.status_code == 200
    assert after.json() == before
    assert [j["id"] for j in listed] == [first["id"], second["id"]]


def test_hf_dataset_from_the_data_store(tmp_path, endpoint, hub_online):
    from huggingface_hub import HfApi

    url, _ = endpoint
    folder = write_beir(tmp_path / "upload")
    with running_platform(tmp_path) as (base_url, _settings):
        api = HfApi(endpoint=f"{base_url}/v1/hf", token=False)
        requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": "evalns"}, timeout=30)
        api.create_repo("evalns/tiny-beir", repo_type="dataset", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id="evalns/tiny-beir", repo_type="dataset")
        created = requests.post(
            f"{base_url}/v1/evaluation/jobs", json=job_body(url, "hf://datasets/evalns/tiny-beir"), timeout=30
        ).json()
        deadline = time.monotonic() + 60
        while (doc := requests.get(f"{base_url}/v1/evaluation/jobs/{created['id']}", timeout=30).json())[
            "status"
        ] not in TERMINAL:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert doc["status"] == "completed", doc["status_details"]
        results = requests.get(f"{base_url}/v1/evaluation/jobs/{created['id']}/results", timeout=30).json()
        missing = requests.post(
            f"{base_url}/v1/evaluation/jobs", json=job_body(url, "hf://datasets/evalns/no-such-repo"), timeout=30
        ).json()
        while (failed := requests.get(f"{base_url}/v1/evaluation/jobs/{missing['id']}", timeout=30).json())[
            "status"
        ] not in TERMINAL:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    _, expected = independent_reference(folder, 10, ["ndcg_cut_10"])
    value = results["tasks"]["my-beir-task"]["metrics"]["retriever.ndcg_cut_10"]["scores"]["ndcg_cut_10"]["value"]
    assert value == pytest.approx(expected["ndcg_cut_10"], abs=1e-9)
    assert failed["status"] == "failed"
    assert "evalns/no-such-repo" in failed["status_details"]["message"]


def test_cancel_stops_a_running_job_and_results_are_refused(tmp_path, endpoint):
    url, state = endpoint
    write_beir(tmp_path / "beir" / "big", docs_per_topic=400)  # 2,400 documents: ~38 requests of 64
    state.delay_s = 0.2
    with platform_client(tmp_path) as (client, _):
        job_id = client.post("/v1/evaluation/jobs", json=job_body(url, "file://big/")).json()["id"]
        wait_for(client, job_id, statuses=("running",) + TERMINAL)
        deadline = time.monotonic() + 30
        while state.count("passage") == 0:  # wait until the corpus pass has begun
            assert time.monotonic() < deadline
            time.sleep(0.05)
        early = client.get(f"/v1/evaluation/jobs/{job_id}/results")
        assert early.status_code == 409
        assert "running" in early.json()["detail"]
        assert client.post(f"/v1/evaluation/jobs/{job_id}/cancel").status_code == 200
        doc = wait_for(client, job_id)
        sent = state.requests
        assert doc["status"] == "cancelled"
        assert client.post(f"/v1/evaluation/jobs/{job_id}/cancel").status_code == 409
        refused = client.get(f"/v1/evaluation/jobs/{job_id}/results")
    assert refused.status_code == 409
    assert "cancelled" in refused.json()["detail"]
    assert sent < 30  # stopped long before the ~40 requests of a full run


def test_missing_dataset_file_fails_the_job_with_a_message_naming_it(tmp_path, endpoint):
    url, _ = endpoint
    write_beir(tmp_path / "beir" / "tiny", skip=("qrels/test.tsv",))
    with platform_client(tmp_path) as (client, settings):
        doc = wait_for(client, client.post("/v1/evaluation/jobs", json=job_body(url)).json()["id"])
        unknown = client.get("/v1/evaluation/jobs/eval-doesnotexist/results")
    message = doc["status_details"]["message"]
    assert doc["status"] == "failed"
    assert "qrels/test.tsv" in message
    assert str(settings.beir_root / "tiny") in message
    assert doc["status_logs"][-1]["status"] == "failed"
    assert "qrels/test.tsv" in doc["status_logs"][-1]["detail"]
    assert unknown.status_code == 404


def test_endpoint_failure_fails_the_job_with_the_endpoint_error(tmp_path, endpoint):
    url, state = endpoint
    write_beir(tmp_path / "beir" / "tiny")
    state.nan = True
    with platform_client(tmp_path) as (client, _):
        doc = wait_for(client, client.post("/v1/evaluation/jobs", json=job_body(url)).json()["id"])
    assert doc["status"] == "failed"
    assert "NaN" in doc["status_details"]["message"]


@pytest.mark.parametrize(
    "mutate, status, fragment",
    [
        (lambda b: b["config"]["tasks"]["my-beir-task"].update(type="bm25"), 422, "'bm25' is not supported"),
        (lambda b: b["config"]["tasks"]["my-beir-task"]["metrics"].update(mrr_10={"type": "mrr_10"}), 422, "'mrr_10'"),
        (lambda b: b["config"]["tasks"]["my-beir-task"].update(dataset={}), 422, "dataset.files_url is missing"),
        (lambda b: b["config"]["tasks"]["my-beir-task"].update(dataset={"files_url": "s3://x/"}), 422, "s3://x/"),
        (lambda b: b["config"].update(type="llm"), 422, "config.type 'llm'"),
        (lambda b: b["config"].update(tasks={}), 422, "config.tasks is empty"),
        (
            lambda b: b["target"]["retriever"]["pipeline"]["query_embedding_model"]["api_endpoint"].update(url="nope"),
            422,
            "query_embedding_model.api_endpoint.url",
        ),
        (lambda b: b["target"]["retriever"]["pipeline"].update(top_k=0), 422, "top_k"),
        (lambda b: b.update(config="ev/unknown-config"), 404, "ev/unknown-config"),
        (lambda b: b.update(target="no-slash"), 422, "namespace/name"),
        (lambda b: b.update(custom_fields=[1]), 422, "custom_fields"),
        (lambda b: b.pop("target"), 422, "target is required"),
    ],
)
def test_bad_job_requests_get_4xx_naming_the_problem(tmp_path, mutate, status, fragment):
    body = job_body("http://127.0.0.1:9/v1/embeddings")
    mutate(body)
    with platform_client(tmp_path) as (client, _):
        response = client.post("/v1/evaluation/jobs", json=body)
        assert client.get("/v1/evaluation/jobs").json()["pagination"]["total_results"] == 0
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"]


def test_malformed_json_body_is_refused(tmp_path):
    with platform_client(tmp_path) as (client, _):
        response = client.post(
            "/v1/evaluation/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422


def test_stored_config_and_target_are_referenced_by_name(tmp_path, endpoint):
    url, state = endpoint
    write_beir(tmp_path / "beir" / "tiny")
    state.required_key = "k-123"
    body = job_body(url, api_key="k-123")
    with platform_client(tmp_path) as (client, _):
        config = client.post("/v1/evaluation/configs", json={**body["config"], "name": "beir-cfg"})
        target = client.post("/v1/evaluation/targets", json={**body["target"], "name": "tgt", "namespace": "ev"})
        assert config.status_code == 200, (config.text, target.text)
        assert target.status_code == 200, (config.text, target.text)
        assert "k-123" not in target.text
        assert client.post("/v1/evaluation/configs", json={**body["config"], "name": "beir-cfg"}).status_code == 409
        assert client.get("/v1/evaluation/configs/ev/beir-cfg").json()["tasks"] == body["config"]["tasks"]
        assert client.get("/v1/evaluation/targets").json()["data"][0]["id"] == "ev/tgt"
        job = client.post("/v1/evaluation/jobs", json={"config": "ev/beir-cfg", "target": "ev/tgt"})
        doc = wait_for(client, job.json()["id"])
        assert client.delete("/v1/evaluation/configs/ev/beir-cfg").status_code == 200
        assert client.get("/v1/evaluation/configs/ev/beir-cfg").status_code == 404
    assert doc["status"] == "completed", doc["status_details"]  # the stored target's key reached the endpoint


@pytest.mark.slow
def test_real_minilm_on_a_scifact_subset_matches_an_independent_evaluation(shared_data):
    """The packaged all-MiniLM-L6-v2 on real SciFact test queries, against a corpus subset (short max_seq_length
    to keep it cheap): the evaluator's loading, search and metrics vs numpy + pytrec_eval on the same vectors."""
    from sentence_transformers import SentenceTransformer

    from embed_ft.platform.services.model_weights import bundled_minilm_path

    full = evaluation.load_beir_folder(shared_data / "beir" / "scifact")
    assert full.num_docs == 5183
    assert full.num_queries == 300
    query_ids = full.query_ids[:60]
    judged = {d for q in query_ids for d in full.qrels[q]}
    keep = [i for i, cid in enumerate(full.corpus_ids) if cid in judged or i % 40 == 0]
    dataset = evaluation.BeirDataset(
        source="subset",
        location="subset",
        corpus_ids=[full.corpus_ids[i] for i in keep],
        corpus_texts=[full.corpus_texts[i] for i in keep],
        query_ids=query_ids,
        query_texts=full.query_texts[:60],
        qrels={q: full.qrels[q] for q in query_ids},
        corpus_fingerprint="subset",
        queries_fingerprint="subset",
    )
    model = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    model.max_seq_length = 128
    texts = dataset.corpus_texts + dataset.query_texts
    vectors = dict(zip(texts, model.encode(texts, batch_size=32), strict=True))
    embedder = CallableEmbedder(lambda batch, _: np.stack([vectors[t] for t in batch]), identity={"kind": "minilm"})
    names = ["ndcg_cut_10", "recall_10", "recall_5", "map", "recip_rank"]
    outcome = evaluation.evaluate_retrieval(dataset, embedder, embedder, names, 10)

    docs = np.stack([vectors[t] for t in dataset.corpus_texts])
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    run = {}
    for qid, text in zip(dataset.query_ids, dataset.query_texts, strict=True):
        scores = docs @ (vectors[text] / np.linalg.norm(vectors[text]))
        run[qid] = {dataset.corpus_ids[j]: float(scores[j]) for j in np.argsort(-scores)[:10]}
    per_query = pytrec_eval.RelevanceEvaluator(
        dataset.qrels, {"ndcg_cut.10", "recall.5,10", "map", "recip_rank"}
    ).evaluate(run)
    assert {q: set(d) for q, d in outcome.run.items()} == {q: set(d) for q, d in run.items()}
    for name in names:
        expected = float(np.mean([s[name] for s in per_query.values()]))
        assert outcome.metrics[name] == pytest.approx(expected, abs=1e-6), name
    assert 0.5 < outcome.metrics["ndcg_cut_10"] < 0.95  # a real model finds SciFact's judged abstracts
