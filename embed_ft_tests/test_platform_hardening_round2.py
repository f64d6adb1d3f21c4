"""Hardening, round 2 (issue 24, F1-F9 and F16): bounded inputs, nothing in use deleted, one request never
bricks a home.

Every test talks to a platform on 127.0.0.1 over HTTP only (``embed-ft platform serve`` as a subprocess, or the
in-process helper where a restart of the same home is the point). The routes of the sweeps come from the running
app's ``GET /openapi.json``, so a new route is covered without editing this file.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import pytest
import requests

from embed_ft.state_layout import BEIR_DIR, BEIR_ROOT_ENV
from embed_ft_tests.home_probes import served_platform
from embed_ft_tests.platform_customizer_helpers import (
    TIMEOUT,
    create_config,
    job_body,
    jsonl,
    make_triplets,
    upload_dataset,
)
from embed_ft_tests.platform_server import running_platform
from embed_ft_tests.test_platform_hardening import (
    NDJSON,
    cancel_active_jobs,
    file_line,
    header_line,
    repo_files,
)
from embed_ft_tests.test_platform_properties import list_routes

NS = "round2-ns"
REPO = "round2-repo"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
JSON = {"Content-Type": "application/json"}
DEPTH_LIMIT_WORDS = "limit of 64 levels"


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def post_text(url: str, text: str, method: str = "POST") -> requests.Response:
    return requests.request(method, url, data=text.encode("utf-8"), headers=JSON, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One subprocess platform (its memory is measurable apart from the test's) with a namespace and a repo."""
    tmp = tmp_path_factory.mktemp("round2")
    # The BEIR sets of file:// tasks under this home (the bomb is written there), not ./dev's shared BEIR root.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(BEIR_ROOT_ENV, str(tmp / "home" / BEIR_DIR))
        with served_platform(tmp / "home", tmp / "platform.log") as served:
            assert requests.post(f"{served.url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).status_code == 201
            assert (
                requests.post(
                    f"{served.url}/v1/datastore/namespaces", data={"namespace": NS}, timeout=TIMEOUT
                ).status_code
                < 300
            )
            assert (
                requests.post(
                    f"{served.url}/v1/hf/api/repos/create",
                    json={"name": REPO, "organization": NS, "type": "dataset"},
                    timeout=TIMEOUT,
                ).status_code
                == 200
            )
            upload_dataset(served.url, NS, "tiny", jsonl(make_triplets(16)), None, tmp)
            create_config(served.url, NS)
            yield served
            cancel_active_jobs(served.url)


@pytest.fixture(scope="module")
def platform(server):
    """``(base_url, openapi spec)`` of the module's platform."""
    spec = requests.get(f"{server.url}/openapi.json", timeout=TIMEOUT)
    assert spec.status_code == 200, spec.text[:300]
    return server.url, spec.json()


# ============================================================ F1, F8: nesting depth at the boundary


def test_deep_model_is_refused_naming_the_limit_and_the_home_still_starts(tmp_path):
    """F1: a model whose custom_fields nest ~950 deep (and an id the start-up's repair pattern matches) was stored
    with 201, and every later start-up died with RecursionError. Now: 4xx naming the limit, nothing stored, and the
    home starts again and lists."""
    bodies = {
        "/v1/models": '{"name": "sample100", "namespace": "%s", "custom_fields": {"x": %s}}' % (NS, deep_array(950)),
        "/v1/namespaces": '{"id": "sample100e100", "custom_fields": %s}' % deep_object(950),
    }
    with running_platform(tmp_path) as (base_url, _):
        assert requests.post(f"{base_url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).status_code == 201
        for route, text in bodies.items():
            response = post_text(f"{base_url}{route}", text)
            assert 400 <= response.status_code < 500, (route, response.status_code, response.text[:300])
            assert DEPTH_LIMIT_WORDS in response.text, response.text[:300]
        models = requests.get(f"{base_url}/v1/models", timeout=TIMEOUT).json()["data"]
        assert not [m for m in models if m["name"] == "sample100"], "the refused model was stored"
    with running_platform(tmp_path) as (base_url, _):  # the same home starts again
        listed = requests.get(f"{base_url}/v1/namespaces", params={"page_size": 1000}, timeout=TIMEOUT)
        assert listed.status_code == 200
        assert NS in [n["id"] for n in listed.json()["data"]]


def test_json_at_the_limit_is_accepted(platform):
    """The limit is a limit, not a ban: custom_fields nested within it are stored and read back."""
    base_url, _ = platform
    nested = json.loads(deep_object(60))
    response = requests.post(
        f"{base_url}/v1/models", json={"name": "nested-ok", "namespace": NS, "custom_fields": nested}, timeout=TIMEOUT
    )
    assert response.status_code == 201, response.text[:300]
    assert requests.get(f"{base_url}/v1/models/{NS}/nested-ok", timeout=TIMEOUT).json()["custom_fields"] == nested


def _fill_path(path: str) -> str:
    values = {
        "plural": "datasets",
        "namespace": NS,
        "name": REPO,
        "revision": "main",
        "job_id": "no-such-job",
        "path": "a.txt",
    }
    return re.sub(r"\{(\w+)(?::path)?\}", lambda m: values.get(m.group(1), REPO), path)


def _write_routes(spec: dict) -> list[tuple[str, str, str]]:
    return [
        (method.upper(), path, _fill_path(path))
        for path, operations in sorted(spec["paths"].items())
        for method in operations
        if method in ("post", "patch", "put")
    ]


@pytest.mark.parametrize("depth", [962, 1000, 5000])
def test_deep_json_never_5xx_on_any_write_route(platform, depth):
    """F8: a JSON body nested >= 1,000 deep answered 500 on every JSON route (at ~962 the row was stored, then
    500). Now every POST/PATCH/PUT route answers 4xx naming the limit, before any route code runs."""
    base_url, spec = platform
    routes = _write_routes(spec)
    assert len(routes) >= 10, routes
    failures = []
    for method, path, url in routes:
        for text in (deep_array(depth), '{"name": "deep", "namespace": "%s", "x": %s}' % (NS, deep_object(depth))):
            response = post_text(f"{base_url}{url}", text, method)
            if not (400 <= response.status_code < 500 and DEPTH_LIMIT_WORDS in response.text):
                failures.append(f"{method} {path} -> {response.status_code}: {response.text[:120]}")
    assert not failures, "\n".join(failures)


def test_deep_filter_is_400_naming_the_limit_on_every_list_route(platform):
    """F8: ``filter`` nested ~960 brackets deep answered 500 on all 12 list routes. Now 400 naming the limit (the
    paged lists); other GET routes ignore filters and must not fail either."""
    base_url, spec = platform
    routes = [
        path for path in list_routes(spec) if "pagination" in requests.get(f"{base_url}{path}", timeout=TIMEOUT).json()
    ]
    assert len(routes) >= 10, routes
    failures = []
    for path in routes:
        for kind in ("filter", "search"):
            key = kind + "[custom_fields]" + "[a]" * 960
            response = requests.get(f"{base_url}{path}", params={key: "1"}, timeout=TIMEOUT)
            if response.status_code != 400 or "MAX_FILTER_DEPTH" not in response.text:
                failures.append(f"GET {path} ?{kind}[...960 deep] -> {response.status_code}: {response.text[:120]}")
    assert not failures, "\n".join(failures)


# ============================================================ F16: malformed filters, keys with a dot


@pytest.mark.parametrize(
    "key",
    ["filter[custom_fields][x[y]]", "filter[]", "filter[name", "search[name]]", "filter[custom_fields]x", "search[]"],
)
def test_malformed_filter_is_400_naming_it(platform, key):
    """F16: a malformed ``filter[...]`` was ignored and the whole list answered. Now 400 naming the parameter."""
    base_url, _ = platform
    response = requests.get(f"{base_url}/v1/models", params={key: "v"}, timeout=TIMEOUT)
    assert response.status_code == 400, (key, response.status_code, response.text[:300])
    assert key[:12] in response.json()["detail"], response.text[:300]


def test_custom_field_key_with_a_dot_is_filterable(platform):
    """F16: ``filter[custom_fields][a.b]=x`` (what the SDK sends for the key ``a.b``) found nothing, since the dot
    was read as nesting. Now the bracket is the key; a dotted single bracket still nests."""
    base_url, _ = platform
    for name, value in (("dotted-x", "x"), ("dotted-y", "y")):
        response = requests.post(
            f"{base_url}/v1/models",
            json={"name": name, "namespace": NS, "custom_fields": {"a.b": value, "c": {"d": value}}},
            timeout=TIMEOUT,
        )
        assert response.status_code == 201, response.text[:300]

    def names(params: dict) -> list[str]:
        response = requests.get(f"{base_url}/v1/models", params={**params, "filter[namespace]": NS}, timeout=TIMEOUT)
        assert response.status_code == 200, response.text[:300]
        return sorted(m["name"] for m in response.json()["data"])

    assert names({"filter[custom_fields][a.b]": "x"}) == ["dotted-x"]
    assert names({"filter[custom_fields][c][d]": "y"}) == ["dotted-y"]
    assert names({"filter[custom_fields.c.d]": "y"}) == ["dotted-y"]
    assert names({"filter[custom_fields][c.d]": "x"}) == ["dotted-x"]  # no key "c.d": read as c then d


# ============================================================ F2: decompression bombs


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM line")


def write_bomb(folder: Path, inflated_mib: int) -> int:
    """A BEIR folder whose corpus.jsonl.gz is ``inflated_mib`` MiB of spaces (under 1 MB packed); its size."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a query"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    block = b" " * (1024 * 1024)
    with gzip.open(folder / "corpus.jsonl.gz", "wb") as packed:
        for _ in range(inflated_mib):
            packed.write(block)
    return (folder / "corpus.jsonl.gz").stat().st_size


@pytest.mark.slow  # 5 s: a platform subprocess decompressing a bomb
def test_gzip_bomb_in_an_evaluation_dataset_fails_the_job_without_the_memory(server):
    """F2: a 0.78 MB corpus.jsonl.gz (768 MiB of spaces) grew the server's RSS by 1.5 GiB (decompressed whole).
    Now the decompressed size is measured by streaming: the job fails naming the file and the limit, and the
    server's peak RSS grows by far less than the inflated size."""
    packed = write_bomb(server.home / "beir" / "bomb", 768)
    assert packed < 1024 * 1024
    endpoint = {"api_endpoint": {"url": "http://127.0.0.1:9/v1/embeddings", "model_id": "ns/m", "format": "nim"}}
    body = {
        "config": {
            "type": "retriever",
            "namespace": NS,
            "tasks": {
                "t": {
                    "type": "beir",
                    "dataset": {"files_url": "file://bomb/"},
                    "metrics": {"recall_5": {"type": "recall_5"}},
                }
            },
        },
        "target": {
            "type": "retriever",
            "retriever": {
                "pipeline": {"query_embedding_model": endpoint, "index_embedding_model": endpoint, "top_k": 5}
            },
        },
    }
    before = peak_rss_bytes(server.pid)
    created = requests.post(f"{server.url}/v1/evaluation/jobs", json=body, timeout=TIMEOUT)
    assert created.status_code < 300, created.text[:300]
    deadline = time.monotonic() + 300
    while (doc := requests.get(f"{server.url}/v1/evaluation/jobs/{created.json()['id']}", timeout=TIMEOUT).json())[
        "status"
    ] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)
    grown = peak_rss_bytes(server.pid) - before
    message = doc["status_details"]["message"]
    assert grown < 128 * 1024**2, f"peak RSS grew by {grown / 1024**2:.0f} MiB"
    assert doc["status"] == "failed", doc
    assert "corpus.jsonl.gz" in message, message
    assert "max_dataset_file_bytes" in message, message


# ============================================================ F7: output names checked at create


def test_too_long_output_model_is_refused_at_create(platform):
    """F7: an ``output_model`` of 250+ characters was accepted; the job trained, then failed registering
    ``<name>@<job id>`` (InvalidPathError). Now 422 naming output_model at create, and no job is made."""
    base_url, _ = platform
    jobs = f"{base_url}/v1/customization/jobs"
    before = requests.get(jobs, params={"page_size": 1000}, timeout=TIMEOUT).json()["pagination"]["total_results"]
    body = {**job_body(f"{NS}/minilm-sft@v1", NS, "tiny", max_steps=1), "output_model": f"{NS}/{'m' * 250}"}
    response = requests.post(jobs, json=body, timeout=TIMEOUT)
    assert response.status_code == 422, response.text[:300]
    assert "output_model" in response.json()["detail"], response.text[:300]
    unnamed = {**body, "name": "n" * 240}
    del unnamed["output_model"]
    response = requests.post(jobs, json=unnamed, timeout=TIMEOUT)
    assert response.status_code == 422, response.text[:300]
    after = requests.get(jobs, params={"page_size": 1000}, timeout=TIMEOUT).json()["pagination"]["total_results"]
    assert after == before


def test_longest_output_model_is_accepted(platform):
    base_url, _ = platform
    body = {**job_body(f"{NS}/minilm-sft@v1", NS, "tiny", max_steps=1), "output_model": f"{NS}/{'m' * 200}"}
    response = requests.post(f"{base_url}/v1/customization/jobs", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:300]
    requests.post(f"{base_url}/v1/customization/jobs/{response.json()['id']}/cancel", timeout=TIMEOUT)


# ============================================================ F9: path limits count bytes


@pytest.mark.parametrize(
    "path",
    ["数" * 100 + ".txt", "dir/" + "😀" * 64, "数" * 400],
    ids=["cjk-300-bytes", "emoji-256-bytes", "cjk-1200-bytes"],
)
def test_multibyte_commit_path_over_the_byte_limit_is_4xx(platform, path):
    """F9: a commit path of 100 CJK characters (300 bytes) passed the 255-character check and the file system
    answered ENAMETOOLONG -> 500. The limits count UTF-8 bytes now: 4xx naming them, nothing committed."""
    base_url, _ = platform
    response = requests.post(
        f"{base_url}/v1/hf/api/datasets/{NS}/{REPO}/commit/main",
        data=header_line() + file_line(path, b"x"),
        headers=NDJSON,
        timeout=TIMEOUT,
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "bytes" in response.json()["detail"], response.text[:300]
    assert path not in repo_files(base_url, NS, REPO)


def test_multibyte_commit_path_at_the_byte_limit_is_committed(platform):
    base_url, _ = platform
    path = "数" * 85  # 255 bytes
    response = requests.post(
        f"{base_url}/v1/hf/api/datasets/{NS}/{REPO}/commit/main",
        data=header_line() + file_line(path, b"x"),
        headers=NDJSON,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text[:300]
    assert path in repo_files(base_url, NS, REPO)
