"""Hardening of the local platform (issue 11): invalid values never stored, one server per home, bounded requests,
crash leftovers, paths and entities.

Every test talks to a platform on 127.0.0.1 over HTTP only: either the in-process helper of
``platform_server.running_platform`` or the public entry point ``embed-ft platform serve`` as a subprocess (for
memory, kill -9 and second-server tests). Nothing here imports the platform's internals. Crash leftovers are made
by hand in the platform home with the names the platform uses (``staging/<uuid>``, ``snapshots/.<id>.building``,
``models/.<job>.partial``) and by real ``kill -9``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests

from embed_ft_tests.home_probes import REPO_ROOT, ServedPlatform, child_env, serve_command, served_platform
from embed_ft_tests.platform_customizer_helpers import (
    TIMEOUT,
    create_config,
    deploy,
    embeddings,
    job_body,
    jsonl,
    make_triplets,
    upload_dataset,
    wait_for,
    wait_for_job,
)
from embed_ft_tests.platform_server import running_platform

NS = "harden-ns"
CONFIG = f"{NS}/minilm-sft@v1"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
ACTIVE = ("created", "pending", "running", "cancelling")


# --------------------------------------------------------------------------------------------------- helpers


def post_raw(url: str, text: str, method: str = "POST") -> requests.Response:
    """Send ``text`` as the JSON body unchanged: NaN, Infinity, 1e999 and lone-surrogate escapes such as
    ``\\ud800`` are valid to Python's json reader but json.dumps would never write them."""
    return requests.request(method, url, data=text.encode("utf-8"), headers=JSON, timeout=TIMEOUT)


def assert_refused(response: requests.Response, field: str, what: str) -> None:
    """A 4xx (not 5xx) whose body names ``field``."""
    assert 400 <= response.status_code < 500, (
        f"{what}: expected a 4xx naming {field!r}, got {response.status_code}: {response.text[:300]}"
    )
    assert field in response.text, f"{what}: the error does not name {field!r}: {response.text[:300]}"


def list_all(base_url: str, path: str) -> list[dict]:
    response = requests.get(f"{base_url}{path}", params={"page_size": 1000}, timeout=TIMEOUT)
    assert response.status_code == 200, f"GET {path} answered {response.status_code}: {response.text[:300]}"
    return response.json()["data"]


def cancel_active_jobs(base_url: str) -> None:
    """Today's code accepts some bad jobs and runs them: stop them so they do not eat the CPU of later tests."""
    try:
        docs = requests.get(f"{base_url}/v1/customization/jobs", params={"page_size": 1000}, timeout=TIMEOUT)
        if docs.status_code != 200:
            return
        for job in docs.json()["data"]:
            if job.get("status") in ACTIVE:
                requests.post(f"{base_url}/v1/customization/jobs/{job['id']}/cancel", timeout=TIMEOUT)
    except (requests.RequestException, ValueError):
        pass


def header_line(summary: str = "test") -> bytes:
    return json.dumps({"key": "header", "value": {"summary": summary}}).encode() + b"\n"


def file_line(path: str, content: bytes) -> bytes:
    return (
        json.dumps(
            {
                "key": "file",
                "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"},
            }
        ).encode()
        + b"\n"
    )


def create_repo(base_url: str, namespace: str, name: str) -> None:
    """A dataset repo, in its Data Store namespace (created here when missing: repos need an existing one)."""
    requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": namespace}, timeout=TIMEOUT)
    response = requests.post(
        f"{base_url}/v1/hf/api/repos/create",
        json={"name": name, "organization": namespace, "type": "dataset"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text


def repo_files(base_url: str, namespace: str, name: str) -> dict[str, dict]:
    response = requests.get(
        f"{base_url}/v1/hf/api/datasets/{namespace}/{name}/tree/main", params={"recursive": "true"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    return {e["path"]: e for e in response.json() if e["type"] == "file"}


def git_blob_oid_of_stream(size: int, blocks: Iterator[bytes]) -> str:
    h = hashlib.sha1(b"blob %d\x00" % size)
    for block in blocks:
        h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- module platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """One platform for the refusal cases (a tiny dataset, a config for job validation): ``(base_url, home)``.

    A subprocess, not the in-process helper: a module-long server thread that logs a 500's traceback while pytest
    renders a failure trips CPython 3.11.7's non-thread-safe ``ast.parse`` (both draw ``^^^`` carets) and ends
    the session with INTERNALERROR; the per-test in-process platforms below are stopped before pytest reports.
    """
    tmp = tmp_path_factory.mktemp("hardening")
    with served_platform(tmp / "home", tmp / "platform.log") as served_:
        upload_dataset(served_.url, NS, "tiny", jsonl(make_triplets(16)), jsonl(make_triplets(4, offset=100)), tmp)
        create_config(served_.url, NS)
        yield served_.url, served_.home
        cancel_active_jobs(served_.url)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One subprocess platform (its memory is measurable apart from the test's) serving the base model."""
    tmp = tmp_path_factory.mktemp("served")
    with served_platform(tmp / "home", tmp / "platform.log") as platform:
        doc = deploy(platform.url, "serve-ns", "base", BASE_MODEL, timeout_s=180)
        assert doc["status_details"]["status"] == "ready", doc
        yield platform


# ============================================================ 1-3: values that are stored but cannot be returned


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


@pytest.mark.parametrize("token", NON_FINITE)
def test_01_non_finite_number_in_namespace_is_refused_and_lists_survive_restart(tmp_path, token):
    """Item 1: ``{"id":"n1","extra":NaN}`` answers a 4xx naming ``extra``, stores nothing, and GET /v1/namespaces
    answers 200, also after a restart."""
    with running_platform(tmp_path) as (base_url, _):
        response = post_raw(f"{base_url}/v1/namespaces", '{"id": "n1", "extra": %s}' % token)
        assert_refused(response, "extra", f"namespace with extra={token}")
        assert requests.get(f"{base_url}/v1/namespaces/n1", timeout=TIMEOUT).status_code == 404, (
            "the refused namespace was stored"
        )
        assert "n1" not in [d["id"] for d in list_all(base_url, "/v1/namespaces")]
    with running_platform(tmp_path) as (base_url, _):
        list_all(base_url, "/v1/namespaces")


def test_01_list_routes_skip_a_bad_row_left_by_an_older_version(tmp_path):
    """Item 3: a list route never answers 500 because of one bad stored row (skipped and logged, or repaired at
    start-up). The row is written into the home's state file by hand, as today's code stores it."""
    with running_platform(tmp_path) as (base_url, settings):
        requests.post(f"{base_url}/v1/namespaces", json={"id": "good"}, timeout=TIMEOUT).raise_for_status()
        db_path = Path(settings.home) / "state.sqlite3"
    with sqlite3.connect(db_path) as db:
        db.execute(
            "INSERT INTO entities VALUES (?,?,?,?,?,?,?)",
            (
                "namespace",
                "bad",
                None,
                None,
                '{"id": "bad", "extra": NaN, "description": "x", "created_at": "2030-01-01T00:00:00+00:00", '
                '"updated_at": "2030-01-01T00:00:00+00:00"}',
                "2030-01-01T00:00:00+00:00",
                "2030-01-01T00:00:00+00:00",
            ),
        )
    with running_platform(tmp_path) as (base_url, _):
        ids = [d["id"] for d in list_all(base_url, "/v1/namespaces")]
        assert "good" in ids
        for doc in list_all(base_url, "/v1/namespaces"):
            assert json.dumps(doc, allow_nan=False)


SURROGATE = r"bad \ud800 text"  # the JSON escape of a lone surrogate, sent as raw text


def test_02_lone_surrogates_in_entities_are_refused_naming_the_field(platform):
    """Item 2: a lone surrogate in namespaces.description, datasets.description and deployments.model is refused
    with a 4xx naming the field; nothing is stored; every list still answers 200."""
    base_url, _ = platform
    cases = [
        ("/v1/namespaces", '{"id": "s1", "description": "%s"}' % SURROGATE, "description", "/v1/namespaces/s1"),
        (
            "/v1/datasets",
            '{"name": "s2", "namespace": "%s", "description": "%s", "files_url": "hf://datasets/%s/s2"}'
            % (NS, SURROGATE, NS),
            "description",
            f"/v1/datasets/{NS}/s2",
        ),
        (
            "/v1/deployment/model-deployments",
            '{"name": "s3", "namespace": "%s", '
            '"config": {"model": "%s", "nim_deployment": {"disable_lora_support": true}}}' % (NS, SURROGATE),
            "model",
            f"/v1/deployment/model-deployments/{NS}/s3",
        ),
    ]
    for route, text, field, get_path in cases:
        assert_refused(post_raw(f"{base_url}{route}", text), field, f"POST {route}")
        assert requests.get(f"{base_url}{get_path}", timeout=TIMEOUT).status_code == 404, f"{get_path} was stored"
    for path in ("/v1/namespaces", "/v1/datasets", "/v1/deployment/model-deployments"):
        list_all(base_url, path)


def test_02_lone_surrogate_in_embeddings_input_is_refused(served):
    """Item 2: /v1/embeddings with ``"input": "\\ud800"`` answers a 4xx naming ``input`` (today: 500)."""
    for text in (
        '{"model": "%s", "input": "\\ud800"}' % BASE_MODEL,
        '{"model": "%s", "input": ["fine", "%s"]}' % (BASE_MODEL, SURROGATE),
    ):
        assert_refused(post_raw(f"{served.url}/v1/embeddings", text), "input", "embeddings with a lone surrogate")
    assert embeddings(served.url, BASE_MODEL, ["still fine"]).status_code == 200


def test_02_lone_surrogate_in_commit_path_or_summary_is_refused(platform):
    """Item 2: a commit whose file path or summary holds a lone surrogate answers 400 naming it; nothing lands."""
    base_url, _ = platform
    create_repo(base_url, NS, "surrogates")
    url = f"{base_url}/v1/hf/api/datasets/{NS}/surrogates/commit/main"
    bad_path = (
        header_line() + b'{"key": "file", "value": {"path": "a\\ud800.txt", "content": "aGk=", "encoding": "base64"}}\n'
    )
    response = requests.post(url, data=bad_path, headers=NDJSON, timeout=TIMEOUT)
    assert_refused(response, "path", "commit with a lone surrogate in a path")
    bad_summary = b'{"key": "header", "value": {"summary": "bad \\ud800 summary"}}\n' + file_line("ok.txt", b"hi")
    response = requests.post(url, data=bad_summary, headers=NDJSON, timeout=TIMEOUT)
    assert_refused(response, "summary", "commit with a lone surrogate in the summary")
    assert repo_files(base_url, NS, "surrogates") == {}
    info = requests.get(f"{base_url}/v1/hf/api/datasets/{NS}/surrogates", timeout=TIMEOUT)
    assert info.status_code == 200, info.text


# ================================================================================== 4-6: training values


def _job_count(base_url: str) -> int:
    return len(list_all(base_url, "/v1/customization/jobs"))


BAD_HYPERPARAMETERS = [
    # (case id, raw JSON text of the hyperparameter overrides, the field the error must name)
    ("learning_rate 'inf'", '"learning_rate": "inf"', "learning_rate"),
    ("learning_rate NaN", '"learning_rate": NaN', "learning_rate"),
    ("learning_rate 1e30", '"learning_rate": 1e30, "max_steps": 2', "learning_rate"),
    ("seed 2**32", '"seed": 4294967296', "seed"),
    ("batch_size 10**12", '"batch_size": 1000000000000', "batch_size"),
    ("epochs 10**9", '"epochs": 1000000000', "epochs"),
    ("epochs true", '"epochs": true', "epochs"),
]


@pytest.fixture
def job_platform(tmp_path):
    """A platform of its own per case: today a refused-but-stored non-finite job makes every later job list
    answer 500, which would fail the next cases for the wrong reason. Stopped before pytest reports."""
    with running_platform(tmp_path) as (base_url, _):
        upload_dataset(base_url, NS, "tiny", jsonl(make_triplets(16)), None, tmp_path)
        create_config(base_url, NS)
        yield base_url


@pytest.mark.parametrize("case, overrides, field", BAD_HYPERPARAMETERS, ids=[c[0] for c in BAD_HYPERPARAMETERS])
def test_04_05_bad_training_values_are_refused_before_anything_is_stored(job_platform, case, overrides, field):
    """Items 4-6: create validates every hyperparameter before storing: a 4xx naming the field, and no job row."""
    base_url = job_platform
    body = job_body(CONFIG, NS, "tiny")
    hp = {k: v for k, v in body["hyperparameters"].items() if k not in ("learning_rate", "epochs", "batch_size")}
    fixed = {"learning_rate": 5e-5, "epochs": 1, "batch_size": 8}
    named = {m.group(1) for m in re.finditer(r'"(\w+)":', overrides)}
    hp_text = ", ".join([f'"{k}": {json.dumps(v)}' for k, v in {**hp, **fixed}.items() if k not in named] + [overrides])
    body_text = (
        json.dumps({k: v for k, v in body.items() if k != "hyperparameters"})[:-1]
        + ', "hyperparameters": {'
        + hp_text
        + "}}"
    )
    before = _job_count(base_url)
    try:
        response = post_raw(f"{base_url}/v1/customization/jobs", body_text)
        assert_refused(response, field, case)
        assert _job_count(base_url) == before, f"{case}: a job row was stored although the create was refused"
    finally:
        cancel_active_jobs(base_url)


# Hyperparameters inside any plausible validation range that still make the loss non-finite at step 2 (one
# update with a huge decoupled weight decay multiplies every weight by about -1e25). Tried in order; the first
# one the platform accepts is used (a later bound on weight_decay moves to the next).
DIVERGING = [{"weight_decay": 1e30}, {"learning_rate": 1e30}, {"learning_rate": 0.9, "adam_beta1": 0.0}]


@pytest.mark.slow  # 62 s on the shared machine
def test_06_job_whose_loss_becomes_nan_fails_and_registers_no_model(platform):
    """Item 6: a job whose loss becomes non-finite ends ``failed`` with "loss became NaN at step N", registers no
    model, and its GET/status answer 200 with ``null`` (never NaN) in the JSON."""
    base_url, _ = platform
    job = None
    for extra in DIVERGING:
        body = job_body(CONFIG, NS, "tiny", max_steps=2, **extra)
        body["output_model"] = f"{NS}/diverged"
        response = requests.post(f"{base_url}/v1/customization/jobs", json=body, timeout=TIMEOUT)
        if response.status_code == 200:
            job = response.json()
            break
        assert response.status_code < 500, response.text
    assert job is not None, "no diverging hyperparameters were accepted; the test has no way to make the loss NaN"
    try:
        deadline = time.monotonic() + 300
        status = None
        while time.monotonic() < deadline:
            answer = requests.get(f"{base_url}/v1/customization/jobs/{job['id']}/status", timeout=TIMEOUT)
            assert answer.status_code == 200, f"job status answered {answer.status_code}: {answer.text[:300]}"
            status = answer.json()
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.5)
        assert status, f"a diverged job must fail, it ended {status and status['status']}"
        assert status["status"] == "failed", f"a diverged job must fail, it ended {status and status['status']}"
        text = json.dumps(status)
        assert re.search(r"loss became (NaN|nan|inf|-inf|non-finite) at step \d+", text), text[-600:]
        for path in (f"/v1/customization/jobs/{job['id']}", f"/v1/customization/jobs/{job['id']}/status"):
            answer = requests.get(f"{base_url}{path}", timeout=TIMEOUT)
            assert answer.status_code == 200, f"{path}: {answer.status_code}"
            assert not re.search(r"\bNaN\b|\bInfinity\b", answer.text), f"{path} carries NaN/Infinity"
            json.loads(answer.text, parse_constant=lambda c, path=path: pytest.fail(f"{path} carries {c}"))
        names = [f"{m['namespace']}/{m['name']}" for m in list_all(base_url, "/v1/models")]
        assert not [n for n in names if n.startswith(f"{NS}/diverged")], f"a diverged model was registered: {names}"
    finally:
        cancel_active_jobs(base_url)


# =========================================================================================== 7: one server per home


@pytest.mark.slow  # 36 s on the shared machine
def test_07_second_serve_on_the_same_home_exits_and_leaves_the_running_job_alone(tmp_path):
    """Item 7: ``embed-ft platform serve`` holds its home; a second one on the same home exits non-zero at once
    naming the first one's pid and URL; the first one's running job stays running and can still be cancelled."""
    home = tmp_path / "home"
    with served_platform(home, tmp_path / "first.log") as first:
        upload_dataset(first.url, NS, "tiny", jsonl(make_triplets(16)), None, tmp_path)
        create_config(first.url, NS)
        created = requests.post(
            f"{first.url}/v1/customization/jobs",
            json=job_body(CONFIG, NS, "tiny", max_steps=5000, learning_rate=1e-6),
            timeout=TIMEOUT,
        )
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        try:
            wait_for_job(first.url, job_id, ("running",), timeout_s=240)
            second_log = tmp_path / "second.log"
            second = subprocess.Popen(
                serve_command(home),
                cwd=REPO_ROOT,
                env=child_env(),
                stdout=open(second_log, "wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = second.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                if second.poll() is None:
                    os.killpg(second.pid, signal.SIGKILL)
                    second.wait(timeout=30)
            output = second_log.read_text(errors="replace")
            doc = requests.get(f"{first.url}/v1/customization/jobs/{job_id}", timeout=TIMEOUT).json()
            assert code is not None, (
                "a second `serve` on the same home kept running (it should exit at once); "
                f"the first one's job is now {doc['status']}"
            )
            assert code != 0, f"the second `serve` exited 0: {output[-500:]}"
            assert str(first.pid) in output, (
                f"the second `serve` must name the first one's pid {first.pid}: {output[-500:]}"
            )
            assert first.url in output, f"the second `serve` must name the first one's URL {first.url}: {output[-500:]}"
            assert doc["status"] == "running", f"the first one's job became {doc['status']}: {doc['status_logs'][-1]}"
            assert "PlatformRestarted" not in json.dumps(doc["status_logs"])
            assert requests.get(f"{first.url}/health", timeout=TIMEOUT).status_code == 200
            cancel = requests.post(f"{first.url}/v1/customization/jobs/{job_id}/cancel", timeout=TIMEOUT)
            assert cancel.status_code == 200, cancel.text
            wait_for_job(first.url, job_id, ("cancelled",), timeout_s=60)
        finally:
            cancel_active_jobs(first.url)


# ============================================================================================ 8: bounded requests

OVERSIZED_JSON = 8 * 1024 * 1024  # far above a "small" body limit (e.g. 1 MiB) on non-upload routes


def test_08_json_routes_refuse_large_bodies_with_413(platform):
    """Item 8: a small body limit on every non-upload route, answered 413, nothing stored."""
    base_url, _ = platform
    big = "x" * OVERSIZED_JSON
    response = requests.post(f"{base_url}/v1/namespaces", json={"id": "huge", "description": big}, timeout=TIMEOUT)
    assert response.status_code == 413, f"namespace with an 8 MiB description: {response.status_code}"
    assert requests.get(f"{base_url}/v1/namespaces/huge", timeout=TIMEOUT).status_code == 404
    response = requests.post(
        f"{base_url}/v1/datasets", json={"name": "huge", "namespace": NS, "description": big}, timeout=TIMEOUT
    )
    assert response.status_code == 413, f"dataset with an 8 MiB description: {response.status_code}"
    create_repo(base_url, NS, "preupload-big")
    files = [{"path": f"f{i}.txt", "size": 1, "sample": "x" * 1000} for i in range(OVERSIZED_JSON // 1000)]
    response = requests.post(
        f"{base_url}/v1/hf/api/datasets/{NS}/preupload-big/preupload/main", json={"files": files}, timeout=TIMEOUT
    )
    assert response.status_code == 413, f"an 8 MiB preupload body: {response.status_code}"


UPLOAD_BLOCK = 3 * 1024 * 1024  # a multiple of 3: each block base64-encodes on its own
UPLOAD_BLOCKS = 43  # 129 MiB
MAX_RSS_GROWTH = 40 * 1024 * 1024


def test_08_commit_upload_memory_is_bounded_independently_of_the_file_size(served):
    """Item 8: a 129 MiB file committed through the NDJSON commit route (sent chunked) raises the server's RSS by
    far less than its size (today: about 6x its size), and arrives intact."""
    create_repo(served.url, "serve-ns", "big-upload")
    block = os.urandom(UPLOAD_BLOCK)
    encoded = base64.b64encode(block)
    size = UPLOAD_BLOCK * UPLOAD_BLOCKS

    def body():
        yield header_line("big")
        yield b'{"key": "file", "value": {"path": "big.bin", "encoding": "base64", "content": "'
        for _ in range(UPLOAD_BLOCKS):
            yield encoded
        yield b'"}}\n'

    # warm the code path with a small commit first
    small = requests.post(
        f"{served.url}/v1/hf/api/datasets/serve-ns/big-upload/commit/main",
        data=header_line() + file_line("small.txt", b"small"),
        headers=NDJSON,
        timeout=TIMEOUT,
    )
    assert small.status_code == 200, small.text
    baseline = served.rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], served.rss_bytes())
            except (OSError, AssertionError):
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        response = requests.post(
            f"{served.url}/v1/hf/api/datasets/serve-ns/big-upload/commit/main",
            data=body(),
            headers=NDJSON,
            timeout=(5, 180),
        )
    finally:
        done.set()
        sampler.join(5)
    growth = peak[0] - baseline
    assert response.status_code == 200, response.text[:300]
    assert growth < MAX_RSS_GROWTH, (
        f"the server's RSS grew by {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB "
        f"upload (limit {MAX_RSS_GROWTH / 2**20:.0f} MiB)"
    )
    entry = repo_files(served.url, "serve-ns", "big-upload")["big.bin"]
    assert entry["size"] == size
    assert entry["oid"] == git_blob_oid_of_stream(size, (block for _ in range(UPLOAD_BLOCKS)))


# ============================================================================================ 9: bounded embeddings

TOO_MANY_INPUTS = 20_000


def test_09_embeddings_input_count_is_capped(served):
    """Item 9: more inputs than the cap: 413/422 naming ``input`` and the count sent; a 1-string request is
    answered promptly afterwards (no encode of the refused or abandoned request goes on)."""
    try:
        response = requests.post(
            f"{served.url}/v1/embeddings", json={"model": BASE_MODEL, "input": ["x"] * TOO_MANY_INPUTS}, timeout=(5, 15)
        )
        status, text = response.status_code, response.text
    except requests.Timeout:
        status, text = None, "(no answer within 15 s: it is being encoded)"
    assert status in (413, 422), f"{TOO_MANY_INPUTS} inputs: expected 413/422, got {status}: {text[:300]}"
    assert "input" in text, text[:300]
    assert str(TOO_MANY_INPUTS) in text, text[:300]
    assert_prompt_single_encode(served)


def assert_prompt_single_encode(served: ServedPlatform, limit_s: float = 10) -> None:
    started = time.monotonic()
    try:
        ok = (
            requests.post(
                f"{served.url}/v1/embeddings", json={"model": BASE_MODEL, "input": ["one"]}, timeout=(5, limit_s)
            ).status_code
            == 200
        )
    except requests.Timeout:
        ok = False
    assert ok, f"a 1-string request got no answer within {limit_s:.0f} s (an earlier encode is still running)"
    assert time.monotonic() - started < limit_s


def test_09_embeddings_total_characters_are_capped(served):
    """Item 9: 2,000,000 characters in 4 inputs: refused with 413/422 naming a limit (a character cap, or the
    body limit of item 8), never encoded."""
    texts = ["word " * 100_000] * 4
    try:
        response = requests.post(
            f"{served.url}/v1/embeddings", json={"model": BASE_MODEL, "input": texts}, timeout=(5, 15)
        )
        status, text = response.status_code, response.text
    except requests.Timeout:
        status, text = None, "(no answer within 15 s: it is being encoded)"
    assert status in (413, 422), f"2,000,000 characters: expected 413/422, got {status}: {text[:300]}"
    assert re.search(r"limit|at most|maximum|exceed", text, re.I), text[:300]
    assert re.search(r"\d", text), text[:300]


@pytest.mark.slow  # 37 s on the shared machine
def test_09_health_answers_while_long_encodes_run(served):
    """Item 9: /health is not held up by encodes: while a long encode is in flight (a second one queued behind it and a
    huge request whose client disconnects), /health answers before that encode does; the disconnected client leaves
    no encode running (a 1-string request answers within 10 s). Checked by order of answers, not by a clock, so a
    loaded machine cannot fail it."""
    encodes_done = threading.Event()

    def long_encodes():
        try:
            for _ in range(2):
                requests.post(
                    f"{served.url}/v1/embeddings",
                    timeout=(5, 120),
                    json={"model": BASE_MODEL, "input": ["a long passage about proteins " * 60] * 64},
                )
        except requests.RequestException:
            pass
        finally:
            encodes_done.set()

    def huge_then_disconnect():
        try:
            requests.post(
                f"{served.url}/v1/embeddings",
                json={"model": BASE_MODEL, "input": [f"text {i}" for i in range(TOO_MANY_INPUTS)]},
                timeout=(5, 3),
            )
        except requests.RequestException:
            pass

    workers = [threading.Thread(target=long_encodes, daemon=True), threading.Thread(target=huge_then_disconnect)]
    for worker in workers:
        worker.start()
    answered_during_encodes, failed = 0, []
    try:
        while not encodes_done.is_set():
            try:
                status = requests.get(f"{served.url}/health", timeout=(5, 120)).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            if status != 200:
                failed.append(status)
            elif not encodes_done.is_set():
                answered_during_encodes += 1
            encodes_done.wait(0.2)
    finally:
        for worker in workers:
            worker.join(180)
    assert not failed, f"/health failed while encodes ran: {failed}"
    # A server whose encodes hold its event loop would answer at most one probe per gap between encodes.
    assert answered_during_encodes >= 5, (
        f"/health answered {answered_during_encodes} time(s) while two long encodes ran: it waits for them"
    )
    assert_prompt_single_encode(served)


# ================================================================================== 10-11: crash leftovers, races


def _slow_commit(url: str, release: threading.Event, outcome: dict) -> threading.Thread:
    """A commit sent chunked: header and a first file go out at once, a second file only after ``release``."""

    def body():
        yield header_line("racing")
        yield file_line("first.txt", b"first file")
        release.wait(60)
        yield file_line("second.txt", os.urandom(4096))

    def send():
        try:
            response = requests.post(url, data=body(), headers=NDJSON, timeout=(5, 60))
            outcome["status"], outcome["text"] = response.status_code, response.text
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _staged_files(repo: Path) -> list[Path]:
    staging = repo / "staging"
    return [p for p in staging.rglob("*") if p.is_file()] if staging.is_dir() else []


@pytest.mark.slow  # 28 s on the shared machine
def test_10_kill_mid_commit_and_hand_made_leftovers_are_cleaned_at_start_up(tmp_path):
    """Item 10: after kill -9 mid-commit the staging folder is cleaned at the next start; a ``.building`` snapshot,
    a ``.partial`` model and a model folder with no entity (a kill during or just after model save) are cleaned
    (or completed) too; what was committed before stays readable."""
    home = tmp_path / "home"
    repo = home / "datastore" / "datasets" / NS / "crashy"
    with served_platform(home, tmp_path / "first.log") as first:
        create_repo(first.url, NS, "crashy")
        done = requests.post(
            f"{first.url}/v1/hf/api/datasets/{NS}/crashy/commit/main",
            data=header_line() + file_line("kept.txt", b"kept"),
            headers=NDJSON,
            timeout=TIMEOUT,
        )
        assert done.status_code == 200, done.text
        release, outcome = threading.Event(), {}
        sender = _slow_commit(f"{first.url}/v1/hf/api/datasets/{NS}/crashy/commit/main", release, outcome)
        wait_for(lambda: _staged_files(repo), 30, "the commit to stage its first file")
        first.kill(signal.SIGKILL)
        release.set()
        sender.join(30)
    staged_dirs = [p for p in (repo / "staging").iterdir()] if (repo / "staging").is_dir() else []
    assert staged_dirs, "the kill left no staging folder: the test did not hit the window"

    # The other leftovers, made by hand with the names the platform uses.
    building = repo / "snapshots" / f".{'b' * 40}.building"
    (building / "training").mkdir(parents=True)
    (building / "training" / "half.jsonl").write_text("{}\n")
    partial = home / "models" / ".cust-HalfSavedByAKilledWorkr.partial"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    orphan = home / "models" / "cust-RenamedButNeverRegistrd"
    orphan.mkdir(parents=True)
    for name in ("modules.json", "config.json", "config_sentence_transformers.json"):
        (orphan / name).write_text("{}")

    with served_platform(home, tmp_path / "second.log") as second:
        leftovers = [p for p in staged_dirs if p.exists()]
        assert not leftovers, f"staging folders survived the restart: {leftovers}"
        assert not building.exists(), f"{building} survived the restart"
        assert not partial.exists(), f"{partial} survived the restart"
        models = list_all(second.url, "/v1/models")
        registered = any(orphan.name in json.dumps(m) for m in models)
        assert registered or not orphan.exists(), f"{orphan} has no model entity and survived the restart"
        assert set(repo_files(second.url, NS, "crashy")) == {"kept.txt"}
        kept = requests.get(f"{second.url}/v1/hf/datasets/{NS}/crashy/resolve/main/kept.txt", timeout=TIMEOUT)
        assert kept.status_code == 200
        assert kept.content == b"kept"


def test_11_commit_racing_repo_delete_answers_404_or_409(platform):
    """Item 11: a commit whose repo is deleted while it uploads answers 404 or 409, never 500."""
    base_url, home = platform
    create_repo(base_url, NS, "racy")
    repo = home / "datastore" / "datasets" / NS / "racy"
    release, outcome = threading.Event(), {}
    sender = _slow_commit(f"{base_url}/v1/hf/api/datasets/{NS}/racy/commit/main", release, outcome)
    try:
        wait_for(lambda: _staged_files(repo), 30, "the commit to stage its first file")
        deleted = requests.delete(
            f"{base_url}/v1/hf/api/repos/delete",
            json={"name": "racy", "organization": NS, "type": "dataset"},
            timeout=TIMEOUT,
        )
        assert deleted.status_code in (200, 409), deleted.text
    finally:
        release.set()
        sender.join(60)
    assert "error" not in outcome, f"the commit got no answer: {outcome.get('error')}"
    assert outcome["status"] in (404, 409), (
        f"commit racing a delete answered {outcome['status']}: {outcome['text'][:300]}"
    )
    list_all(base_url, "/v1/datasets")


# ============================================================================================ 12-14: paths, entities


def test_12_model_and_dataset_locations_outside_the_platform_stores_are_refused(platform):
    """Item 12: models may not point at ``file:///etc`` (``artifact_path`` or ``artifact.files_url``), datasets not at
    ``hf://datasets/../x`` or ``file:///etc/passwd``: 400 at create, nothing stored; a Data Store URL is fine."""
    base_url, _ = platform
    model_cases = [
        ("etc-path", {"artifact_path": "/etc"}, "artifact_path"),
        ("etc-url", {"artifact": {"files_url": "file:///etc"}}, "files_url"),
        ("root-url", {"artifact": {"files_url": "file:///"}}, "files_url"),
    ]
    for name, extra, field in model_cases:
        response = requests.post(
            f"{base_url}/v1/models", json={"name": name, "namespace": NS, **extra}, timeout=TIMEOUT
        )
        assert response.status_code == 400, (
            f"model {name}: expected 400, got {response.status_code}: {response.text[:200]}"
        )
        assert field in response.text, response.text[:300]
        assert requests.get(f"{base_url}/v1/models/{NS}/{name}", timeout=TIMEOUT).status_code == 404
    dataset_cases = [
        ("dotdot", "hf://datasets/../x"),
        ("passwd", "file:///etc/passwd"),
        ("deep-dotdot", f"hf://datasets/{NS}/../../etc"),
    ]
    for name, files_url in dataset_cases:
        response = requests.post(
            f"{base_url}/v1/datasets", json={"name": name, "namespace": NS, "files_url": files_url}, timeout=TIMEOUT
        )
        assert response.status_code == 400, f"dataset {files_url}: expected 400, got {response.status_code}"
        assert "files_url" in response.text, response.text[:300]
        assert requests.get(f"{base_url}/v1/datasets/{NS}/{name}", timeout=TIMEOUT).status_code == 404
    ok = requests.post(
        f"{base_url}/v1/datasets",
        json={"name": "in-store", "namespace": NS, "files_url": f"hf://datasets/{NS}/tiny"},
        timeout=TIMEOUT,
    )
    assert ok.status_code in (200, 201), ok.text


def test_13_namespace_delete_is_refused_while_it_holds_entities(platform):
    """Item 13: DELETE /v1/namespaces/NS answers 409 while NS/d exists; NS/d stays readable; deleted once empty."""
    base_url, _ = platform
    requests.post(f"{base_url}/v1/namespaces", json={"id": "holder"}, timeout=TIMEOUT).raise_for_status()
    requests.post(
        f"{base_url}/v1/datasets",
        json={"name": "d", "namespace": "holder", "files_url": "hf://datasets/holder/d"},
        timeout=TIMEOUT,
    ).raise_for_status()
    refused = requests.delete(f"{base_url}/v1/namespaces/holder", timeout=TIMEOUT)
    assert refused.status_code == 409, f"deleting a namespace that holds a dataset answered {refused.status_code}"
    assert "holder/d" in refused.text or "dataset" in refused.text, refused.text[:300]
    assert requests.get(f"{base_url}/v1/namespaces/holder", timeout=TIMEOUT).status_code == 200
    assert requests.get(f"{base_url}/v1/datasets/holder/d", timeout=TIMEOUT).status_code == 200
    # 200 with NeMo's DeleteResponse body or 204 (issue 12 moves the Entity Store deletes to the former).
    assert requests.delete(f"{base_url}/v1/datasets/holder/d", timeout=TIMEOUT).status_code in (200, 204)
    assert requests.delete(f"{base_url}/v1/namespaces/holder", timeout=TIMEOUT).status_code in (200, 204)


def _train(base_url: str, **hp: Any) -> str:
    body = job_body("tr/minilm-sft@v1", "tr", "tiny", max_steps=1, **hp)
    body["output_model"] = "tr/ft"
    response = requests.post(f"{base_url}/v1/customization/jobs", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    job = response.json()
    done = wait_for_job(base_url, job["id"], ("completed", "failed", "cancelled"), timeout_s=300)
    assert done["status"] == "completed", done
    return job["output_model"]


@pytest.mark.slow  # 106 s on the shared machine
def test_14_deployment_of_an_unversioned_name_pins_the_version_at_create(tmp_path):
    """Item 14: deploying ``tr/ft`` resolves and pins the newest version at create time; after a newer version
    exists and the platform restarts, the deployment serves the same weights and names the pinned version."""
    probe = ["pinned versions survive restarts"]
    with running_platform(tmp_path) as (base_url, _):
        upload_dataset(base_url, "tr", "tiny", jsonl(make_triplets(16)), None, tmp_path)
        create_config(base_url, "tr")
        first = _train(base_url, learning_rate=1e-5, seed=1)
        doc = deploy(base_url, "tr", "ft-nim", "tr/ft")
        assert doc["status_details"]["status"] == "ready", doc
        assert first in json.dumps(doc), f"the deployment does not name the version it pinned ({first}): {doc}"
        before = np.array(embeddings(base_url, "tr/ft", probe).json()["data"][0]["embedding"])
        second = _train(base_url, learning_rate=1e-3, seed=2)
        assert second != first
    with running_platform(tmp_path) as (base_url, _):
        doc = wait_for(
            lambda: (
                (d := requests.get(f"{base_url}/v1/deployment/model-deployments/tr/ft-nim", timeout=TIMEOUT).json())[
                    "status_details"
                ]["status"]
                != "pending"
                and d
            ),
            120,
            "the deployment to load after the restart",
        )
        assert doc["status_details"]["status"] == "ready", doc
        assert first in json.dumps(doc), doc
        assert second not in json.dumps(doc), doc
        after = np.array(embeddings(base_url, "tr/ft", probe).json()["data"][0]["embedding"])
        assert np.allclose(before, after, atol=1e-5), (
            f"after the restart tr/ft serves other weights (max diff {np.abs(before - after).max():.2e}): "
            f"the deployment followed the newer version {second} instead of the pinned {first}"
        )
