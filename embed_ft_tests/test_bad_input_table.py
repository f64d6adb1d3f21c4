"""Bad input, table-driven: each case gets a clear error naming the problem, and leaves no partial state."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from embed_ft.data.beir import load_beir
from embed_ft.data.specter import SourceError, build_triplet_splits, load_specter_source
from embed_ft.defs.teardown import TeardownConfig
from embed_ft.nemo.errors import NemoAPIError, NemoResponseError
from embed_ft.nemo.evaluator import EvaluatorClient
from embed_ft.nemo.http import ServiceHTTP
from embed_ft.nemo.nim import NimClient
from embed_ft.profiles import LOCAL
from embed_ft.spec.changes import SpecError, apply_changes
from embed_ft.spec.presets import preset_spec

from .fault_scenarios import FaultControl, harness
from .lineage_fixtures import write_beir_set
from .platform_server import running_platform

GOOD_ROW = {"set": ["a query about proteins", "a cited paper on folding", "an unrelated paper on climate"]}


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ------------------------------------------------------------------------------------------ SPECTER sources


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


SPECTER_CASES = [
    # (case id, file name, file bytes, max_text_chars, words the error must contain)
    (
        "wrong types",
        "rows.jsonl",
        _jsonl([{"set": [1, 2, 3]}] * 3),
        20_000,
        ["zero valid rows", "missing_or_non_string=3"],
    ),
    (
        "mixed types",
        "rows.jsonl",
        _jsonl([GOOD_ROW, {"set": [1, 2, 3]}, {"set": "not a list"}]),
        20_000,
        ["missing_or_non_string"],
    ),
    ("wrong arity", "rows.jsonl", _jsonl([{"set": ["only", "two"]}] * 3), 20_000, ["zero valid rows", "wrong_arity=3"]),
    ("empty texts", "rows.jsonl", _jsonl([{"set": ["", "  ", "x"]}] * 3), 20_000, ["zero valid rows", "empty_text=3"]),
    (
        "huge texts",
        "rows.jsonl",
        _jsonl([{"set": ["q" * 500, "p" * 500, "n" * 500]}] * 3),
        100,
        ["zero valid rows", "too_long=3"],
    ),
    (
        "no usable columns",
        "rows.jsonl",
        _jsonl([{"title": "x", "abstract": "y"}]),
        20_000,
        ["lacks the expected columns", "'abstract'", "'title'"],
    ),
    ("empty file", "rows.jsonl", b"", 20_000, ["rows.jsonl"]),
    ("not JSON", "rows.jsonl", b"{this is not json\n", 20_000, ["rows.jsonl"]),
    (
        "corrupt parquet",
        "rows.parquet",
        b"PAR1 definitely not parquet",
        20_000,
        ["rows.parquet", "unreadable or corrupt"],
    ),
    ("invalid UTF-8", "rows.jsonl", b'{"set": ["caf\xe9 au lait", "b", "c"]}\n', 20_000, ["rows.jsonl", "UTF-8"]),
]


@pytest.mark.parametrize(
    "case, file_name, content, max_chars, expected",
    SPECTER_CASES,
    ids=[getattr(c, "values", c)[0] for c in SPECTER_CASES],
)
def test_malformed_specter_sources(tmp_path, case, file_name, content, max_chars, expected):
    source = tmp_path / "source" / file_name
    source.parent.mkdir()
    source.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(SourceError) as error:
        loaded = load_specter_source(str(source), cache_dir=str(tmp_path / "cache"))
        build_triplet_splits(loaded.table, out, max_text_chars=max_chars, source=str(source))
    message = str(error.value)
    for word in expected:
        assert word in message, (case, message)
    assert _files_under(out) == [], f"{case}: partial output left behind"


def test_missing_specter_source_names_it(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        load_specter_source(str(tmp_path / "nowhere.jsonl"))


# ---------------------------------------------------------------------------------------- Launchpad config


SPEC_CASES = [
    ({"training.epochs": -1}, "training.epochs: Input should be greater than or equal to 1"),
    ({"training.epochs": 0}, "training.epochs: Input should be greater than or equal to 1"),
    ({"training.batch_size": 0}, "training.batch_size: Input should be greater than or equal to 1"),
    ({"training.learning_rate": 5.0}, "training.learning_rate: Input should be less than 1"),
    ({"training.finetuning_type": "qlora"}, "training.finetuning_type: Input should be 'all_weights', 'lora'"),
    ({"remote.poll_interval_s": 0}, "remote.poll_interval_s: Input should be greater than or equal to 0.05"),
    ({"data.dataset_name": "Has Spaces"}, "data.dataset_name: String should match pattern"),
    ({"evaluation.tasks": ["scidocs"]}, "evaluation.tasks: unknown evaluation task 'scidocs'"),
    ({"evaluation.tasks": []}, "evaluation.tasks: Tuple should have at least 1 item"),
    ({"evaluation.tasks": ["file://heldout/"]}, "reserved for the held-out split"),
    ({"evaluation.metrics": ["accuracy"]}, "unknown metric(s) ['accuracy']"),
    ({"evaluation.top_k": 0}, "evaluation.top_k: Input should be greater than or equal to 1"),
    ({"serving.gpu": -1}, "serving.gpu: Input should be greater than or equal to 0"),
    ({"training.lr": 1e-3}, "training.lr: no such field"),
]


@pytest.mark.parametrize(
    "changes, expected", SPEC_CASES, ids=[f"{next(iter(c))}={next(iter(c.values()))!r}" for c, _ in SPEC_CASES]
)
def test_invalid_spec_change(changes, expected):
    with pytest.raises(SpecError) as error:
        apply_changes(preset_spec("scifact", LOCAL), changes)
    assert expected in str(error.value)


TEARDOWN_CASES = [
    ({"experiments": [""]}, "experiments[] must be 1-63 characters"),
    ({"experiments": ["../escape"]}, "experiments[] must be 1-63 characters"),
]


@pytest.mark.parametrize("values, expected", TEARDOWN_CASES, ids=["empty", "escape"])
def test_invalid_launchpad_config(values, expected):
    with pytest.raises(ValidationError) as error:
        TeardownConfig(**values)
    assert expected in str(error.value)


# ------------------------------------------------------------------------------------------------- BEIR sets


def _break_beir(folder: Path, how: str) -> None:
    if how == "no corpus":
        (folder / "corpus.jsonl").unlink()
    elif how == "no qrels":
        (folder / "qrels" / "test.tsv").unlink()
    elif how == "qrels to unknown documents":
        with open(folder / "qrels" / "test.tsv", "a") as fh:
            fh.write("q0\tno-such-doc\t1\n")
    elif how == "qrels to unknown queries":
        with open(folder / "qrels" / "test.tsv", "a") as fh:
            fh.write("no-such-query\td0-0\t1\n")
    elif how == "corpus row without _id":
        with open(folder / "corpus.jsonl", "a") as fh:
            fh.write(json.dumps({"title": "t", "text": "x"}) + "\n")
    elif how == "score not a number":
        with open(folder / "qrels" / "test.tsv", "a") as fh:
            fh.write("q0\td0-1\thigh\n")


@pytest.mark.parametrize(
    "how, expected",
    [
        ("no corpus", "lacks 'corpus.jsonl'"),
        ("no qrels", "lacks 'qrels/test.tsv'"),
        ("qrels to unknown documents", "1 of 9 judged documents missing from corpus.jsonl"),
        ("qrels to unknown queries", "1 of 9 queries missing from queries.jsonl"),
        ("corpus row without _id", "corpus.jsonl:33: expected an object with an `_id` field"),
        ("score not a number", "score 'high' is not a number"),
    ],
)
def test_broken_beir_sets(tmp_path, how, expected):
    folder = write_beir_set(tmp_path)
    _break_beir(folder, how)
    with pytest.raises(SourceError) as error:
        load_beir(folder)
    assert expected in str(error.value)


# ---------------------------------------------------------------------------- platform: models, NIM, results


@pytest.fixture(scope="module")
def faulty_platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    write_beir_set(root / "beir")
    with running_platform(root, enable_faults=True, beir_root=root / "beir") as (base_url, settings):
        yield base_url, FaultControl(base_url)


def test_unknown_base_model_is_refused_and_nothing_is_created(faulty_platform):
    base_url, _ = faulty_platform
    body = {
        "name": "bad@v1",
        "namespace": "bad-input",
        "target": "nobody/no-such-model@v1",
        "training_options": [{"training_type": "sft", "finetuning_type": "all_weights"}],
    }
    response = harness.post(f"{base_url}/v1/customization/configs", json=body, timeout=30)
    assert response.status_code == 404
    assert "customization target nobody/no-such-model@v1 not found" in response.json()["detail"]
    assert harness.get(f"{base_url}/v1/customization/configs/bad-input/bad@v1", timeout=30).status_code == 404

    deploy = {
        "name": "ghost",
        "namespace": "bad-input",
        "config": {"model": "nobody/no-such-model", "nim_deployment": {"disable_lora_support": True}},
    }
    created = harness.post(f"{base_url}/v1/deployment/model-deployments", json=deploy, timeout=30)
    assert created.status_code == 200
    url = f"{base_url}/v1/deployment/model-deployments/bad-input/ghost"
    for _ in range(300):
        details = harness.get(url, timeout=30).json()["status_details"]
        if details["status"] != "pending":
            break
        time.sleep(0.1)
    assert details["status"] == "failed"
    assert "nobody/no-such-model" in details["description"]
    assert "ghost" not in harness.get(f"{base_url}/v1/models", timeout=30).text


def _embedding(values) -> dict:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(values)],
    }


NIM_CASES = [
    ("wrong dimension", _embedding([[0.1, 0.2, 0.3]]), {"dimensions": 384}, "asked for 384 dims, got 3"),
    ("inconsistent dimensions", _embedding([[0.1, 0.2], [0.1, 0.2, 0.3]]), {}, "inconsistent dimensions: [2, 3]"),
    (
        "non-finite value",
        '{"data": [{"index": 0, "embedding": [0.1, NaN, 0.3]}]}',
        {},
        "non-finite value at dimension 1",
    ),
    ("infinite value", '{"data": [{"index": 0, "embedding": [Infinity, 0.1]}]}', {}, "non-finite value at dimension 0"),
    ("non-numeric value", _embedding([[0.1, "x"]]), {}, "non-numeric values"),
    ("fewer embeddings than texts", _embedding([[0.1, 0.2]]), {"texts": 2}, "sent 2 texts, got 1 embeddings"),
    ("no data list", {"embeddings": [[0.1]]}, {}, "no 'data' list"),
    ("empty embedding", _embedding([[]]), {}, "is empty"),
]


@pytest.mark.parametrize("case, answer, options, expected", NIM_CASES, ids=[c[0] for c in NIM_CASES])
def test_nim_answering_nonsense(faulty_platform, case, answer, options, expected):
    base_url, faults = faulty_platform
    if isinstance(answer, str):  # not valid JSON for requests (NaN): sent verbatim
        faults.arm("respond", "/v1/embeddings", "POST", status=200, raw=answer)
        texts = ["one"]
    else:
        faults.arm("respond", "/v1/embeddings", "POST", status=200, body=answer)
        texts = ["one", "two"][: options.get("texts", 1 if len(answer.get("data", [])) < 2 else 2)]
    client = NimClient(ServiceHTTP(base_url, "nim"))
    with pytest.raises(NemoResponseError) as error:
        client.embed(texts, "sentence-transformers/all-MiniLM-L6-v2", dimensions=options.get("dimensions"))
    assert expected in str(error.value)


RESULT_CASES = [
    ("unknown shape", {"scores": {"recall_5": 0.5}}, "no task metrics found in the known shapes"),
    ("empty object", {}, "no task metrics found"),
    ("a bare number", 0.5, "got a float"),
    (
        "metric without a number",
        {"tasks": {"t": {"metrics": {"retriever.recall_5": {"scores": {"recall_5": {"value": "high"}}}}}}},
        "is not a number",
    ),
    (
        "non-finite metric",
        '{"tasks": {"t": {"metrics": {"retriever.recall_5": {"scores": {"recall_5": {"value": NaN}}}}}}}',
        "not finite",
    ),
]


@pytest.mark.parametrize("case, answer, expected", RESULT_CASES, ids=[c[0] for c in RESULT_CASES])
def test_evaluation_results_of_unknown_shape(faulty_platform, case, answer, expected):
    base_url, faults = faulty_platform
    raw = {"raw": answer} if isinstance(answer, str) else {"body": answer}
    faults.arm("respond", "/v1/evaluation/jobs/eval-x/results", "GET", status=200, **raw)
    client = EvaluatorClient(ServiceHTTP(base_url, "evaluator"))
    with pytest.raises(NemoResponseError) as error:
        client.parse_metrics(client.get_results("eval-x"))
    assert expected in str(error.value)


def test_evaluation_of_missing_beir_files_fails_the_job_naming_them(faulty_platform):
    base_url, _ = faulty_platform
    deploy = {
        "name": "base",
        "namespace": "bad-input",
        "config": {"model": "sentence-transformers/all-MiniLM-L6-v2", "nim_deployment": {"disable_lora_support": True}},
    }
    assert harness.post(f"{base_url}/v1/deployment/model-deployments", json=deploy, timeout=30).status_code == 200
    for _ in range(1200):
        status = harness.get(f"{base_url}/v1/deployment/model-deployments/bad-input/base", timeout=30).json()
        if status["status_details"]["status"] != "pending":
            break
        time.sleep(0.1)
    assert status["status_details"]["status"] == "ready"
    body = {
        "config": {
            "type": "retriever",
            "namespace": "bad-input",
            "tasks": {
                "gone": {
                    "type": "beir",
                    "dataset": {"files_url": "file://no-such-set/"},
                    "metrics": {"recall_5": {"type": "recall_5"}},
                }
            },
        },
        "target": {
            "type": "retriever",
            "retriever": {
                "pipeline": {
                    "query_embedding_model": {
                        "api_endpoint": {
                            "url": f"{base_url}/v1/embeddings",
                            "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                        }
                    },
                    "top_k": 5,
                }
            },
        },
    }
    created = harness.post(f"{base_url}/v1/evaluation/jobs", json=body, timeout=30)
    if created.status_code != 200:  # refused up front: the error must name the dataset
        assert "no-such-set" in created.text
        return
    job_id = created.json()["id"]
    for _ in range(600):
        doc = harness.get(f"{base_url}/v1/evaluation/jobs/{job_id}", timeout=30).json()
        if doc["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert doc["status"] == "failed"
    assert "no-such-set" in doc["status_details"]["message"]
    with pytest.raises(NemoAPIError) as error:
        EvaluatorClient(ServiceHTTP(base_url, "evaluator")).get_results(job_id)
    assert error.value.status == 409
