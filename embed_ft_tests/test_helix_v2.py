"""The v2 clients against a real NeMo Platform server (`nemo-helix`, pinned in .ci/install-helix) started on
127.0.0.1 by the session fixture `helix`, with our local platform as the embedding provider behind Helix's inference
gateway. Nothing here is a fake: workspaces, filesets, the gateway and retrieve-eval jobs are Helix's own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster import Failure, build_asset_context

from embed_ft.defs.evaluation_v2 import run_evaluation_v2
from embed_ft.defs.progress import RemoteProgress, subscribe
from embed_ft.defs.values import Deployment
from embed_ft.nemo.deployment import DeploymentClient
from embed_ft.nemo.errors import Conflict, NemoAPIError
from embed_ft.nemo.http import ServiceHTTP
from embed_ft.nemo.nim import NimClient
from embed_ft.nemo.polling import poll
from embed_ft.nemo.status import COMPLETED, is_terminal, job_status
from embed_ft.nemo.v2 import contract
from embed_ft.nemo.v2.evaluation import (
    flat_metrics,
    per_query_scores,
    retrieve_eval_request,
)
from embed_ft.nemo.v2.files import FilesClient, fileset_ref
from embed_ft.nemo.v2.jobs import (
    IDEMPOTENCY_FIELD,
    failure_text,
    job_name,
    retrieve_eval_jobs,
)
from embed_ft.nemo.v2.models import ModelsClient, gateway_provider_url
from embed_ft.nemo.v2.profile import probe, resolve
from embed_ft.profiles import get_profile
from embed_ft.resources import EvaluatorResource
from embed_ft.spec.presets import preset_spec

from .platform_server import running_platform

pytestmark = pytest.mark.slow  # Helix start-up (~5-30 s) and a retrieve-eval job subprocess (~15 s)

WORKSPACE = "embed-ft-tests"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CORPUS = [
    {"_id": "d1", "title": "Cats", "text": "Cats purr, sleep most of the day and chase mice."},
    {"_id": "d2", "title": "Rockets", "text": "A rocket launch puts a satellite into orbit around the Earth."},
    {"_id": "d3", "title": "Markets", "text": "The stock market fell sharply after the interest rate decision."},
    {"_id": "d4", "title": "Bread", "text": "Knead the dough, let it rise, and bake the bread in a hot oven."},
]
QUERIES = [
    {"_id": "q1", "text": "what do cats do all day"},
    {"_id": "q2", "text": "space launch of a satellite"},
    {"_id": "q3", "text": "how to bake bread"},
]
QRELS = [("q1", "d1"), ("q2", "d2"), ("q3", "d4")]


def http(url: str) -> ServiceHTTP:
    return ServiceHTTP(url, "helix", timeout=(5.0, 60.0))


def write_beir(folder: Path) -> dict[str, Path]:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in QRELS)
    )
    return {name: folder / name for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")}


@pytest.fixture(scope="module")
def local_nim(tmp_path_factory):
    """Our local platform serving the packaged all-MiniLM-L6-v2 on its OpenAI-compatible NIM routes."""
    with running_platform(tmp_path_factory.mktemp("platform")) as (base_url, _settings):
        DeploymentClient(ServiceHTTP(base_url, "deployment")).create_deployment(
            "baseline", "embed-ft-tests", BASE_MODEL, {"image_name": "local", "image_tag": "1", "gpu": 1}
        )
        nim_url = f"{base_url}/nim"
        NimClient(ServiceHTTP(nim_url, "nim")).wait_for_model(BASE_MODEL, timeout_s=120, interval_s=0.5)
        yield nim_url


def test_every_request_model_matches_helix_openapi(helix):
    """Each request we send names only fields Helix's own OpenAPI document has, and every field it requires."""
    spec = requests.get(f"{helix.url}/openapi.json", timeout=60).json()
    schemas = spec["components"]["schemas"]
    ours = {
        contract.WorkspaceInput: "WorkspaceInput",
        contract.CreateFilesetRequest: "CreateFilesetRequest",
        contract.CreateModelEntityRequest: "CreateModelEntityRequest",
        contract.CreateModelProviderRequest: "CreateModelProviderRequest",
        contract.RetrieveEvalJobRequest: "RetrieveEvalJobRequest",
        contract.RetrieveEvalSpec: "RetrieveEvalInputSpec",
        contract.RetrievalTarget: "RetrievalInputSpec",
        contract.EmbeddingEndpoint: "Model",
        contract.CreateDeploymentConfigRequest: "CreateModelDeploymentConfigRequest",
        contract.CreateDeploymentRequest: "CreateModelDeploymentRequest",
    }
    for model, name in ours.items():
        theirs = schemas[name]
        unknown = set(model.model_fields) - set(theirs["properties"])
        assert not unknown, f"{model.__name__} sends {unknown}, which Helix's {name} does not have"
        required_missing = [f for f in theirs.get("required", []) if f not in model.model_fields]
        assert not required_missing, f"Helix's {name} requires {required_missing}, which {model.__name__} lacks"
    assert set(schemas["HelixJobStatus"]["enum"]) == set(contract.JobStatus.__args__)
    # The list pagination (one model for v1 and v2): Helix's has the same fields, all integers.
    pagination = schemas["PaginationData"]["properties"]
    assert {name: field.get("type") for name, field in pagination.items()} == dict.fromkeys(
        contract.Pagination.model_fields, "integer"
    )
    # The name pattern is Helix's own.
    assert schemas["WorkspaceInput"]["properties"]["name"]["pattern"] == contract.NAME_PATTERN


def test_profile_probe_tells_v2_from_v1(helix, local_nim):
    assert probe(helix.url) == "v2"
    assert probe(local_nim.removesuffix("/nim")) == "v1"
    assert resolve("auto", helix.url) == "v2"
    assert resolve("v1", helix.url) == "v1"
    with pytest.raises(ValueError, match="EMBED_FT_NEMO_API"):
        resolve("v3", helix.url)


def test_workspace_fileset_upload_roundtrip(helix, tmp_path):
    files = FilesClient(http(helix.url))
    files.ensure_workspace(WORKSPACE)
    again = files.ensure_workspace(WORKSPACE)  # 409 -> the existing one
    assert again.created is False
    assert again["name"] == WORKSPACE
    fileset = files.ensure_fileset(WORKSPACE, "roundtrip", description="test")  # Helix answers 200 here, not 201
    assert fileset.name == "roundtrip"
    assert fileset.workspace == WORKSPACE
    assert files.ensure_fileset(WORKSPACE, "roundtrip").name == "roundtrip"  # idempotent
    local = write_beir(tmp_path / "beir")
    listed = files.upload_files(WORKSPACE, "roundtrip", local)
    assert listed == {p: f.stat().st_size for p, f in local.items()}
    back = files.download(WORKSPACE, "roundtrip", "qrels/test.tsv", tmp_path / "back.tsv")
    assert back.read_bytes() == local["qrels/test.tsv"].read_bytes()
    with pytest.raises(ValueError, match="relative path"):
        files.upload_file(WORKSPACE, "roundtrip", "../escape", local["corpus.jsonl"])
    with pytest.raises(ValueError, match="is not a v2 name"):
        files.ensure_fileset(WORKSPACE, "Bad_Name")  # refused here, by the contract's pattern, before any request
    with pytest.raises(NemoAPIError) as missing:
        files.list_files(WORKSPACE, "no-such-fileset")
    assert missing.value.status == 404
    assert "no-such-fileset" in str(missing.value)


def test_gateway_embeddings_and_retrieve_eval_reattach(helix, local_nim, tmp_path):
    """Upload a BEIR set, register our platform as a provider, embed through Helix's gateway, evaluate with Helix's
    retrieve-eval, and find the same job again by its idempotency key (a second materialization reattaches)."""
    h = http(helix.url)
    files, models = FilesClient(h), ModelsClient(h)
    files.ensure_workspace(WORKSPACE)
    files.ensure_fileset(WORKSPACE, "tiny-beir", purpose="dataset")
    files.upload_files(WORKSPACE, "tiny-beir", write_beir(tmp_path / "beir"))
    provider = models.ensure_provider(WORKSPACE, "embed-ft-local", local_nim)
    assert provider.host_url == local_nim
    models.wait_for_provider(WORKSPACE, "embed-ft-local")
    gateway = gateway_provider_url(helix.url, WORKSPACE, "embed-ft-local")
    direct = NimClient(ServiceHTTP(local_nim, "nim")).embed(["cats purr"], BASE_MODEL)
    proxied = NimClient(ServiceHTTP(gateway, "gateway")).embed(["cats purr"], BASE_MODEL)
    assert len(proxied[0]) == 384
    assert proxied == direct  # the gateway forwards, it does not alter

    jobs = retrieve_eval_jobs(h, WORKSPACE)
    key = "0f" * 32
    request = retrieve_eval_request(
        fileset_ref(WORKSPACE, "tiny-beir"), f"{gateway}/v1", BASE_MODEL, ["recall_5", "ndcg_cut_10"], top_k=10
    )
    assert jobs.find(key) is None
    job = jobs.create(request, key)
    assert job["id"] == job_name("embed-ft-eval", key)
    assert re.match(contract.NAME_PATTERN, job["id"])
    assert jobs.find(key)["id"] == job["id"]  # reattach, not resubmit
    done = poll(lambda: jobs.get(job["id"]), is_terminal, timeout_s=300, interval_s=1.0, what="retrieve-eval")
    assert job_status(done) == COMPLETED, done
    assert {r.name for r in jobs.results(job["id"])} >= {"eval-results", "row-scores"}
    metrics = flat_metrics(jobs.download_result(job["id"], "eval-results"), ["recall_5", "ndcg_cut_10"])
    assert metrics["recall_5"] == 1.0
    assert 0.5 < metrics["ndcg_cut_10"] <= 1.0
    rows = per_query_scores(jobs.download_result(job["id"], "row-scores"), ["ndcg_cut_10"])
    assert set(rows) == {"q1", "q2", "q3"}
    mean = sum(row["ndcg_cut_10"] for row in rows.values()) / 3
    assert abs(mean - metrics["ndcg_cut_10"]) < 1e-9
    # A completed job is found again; a job under our name with someone else's key is refused, not reused.
    assert jobs.find(key)["status"] == COMPLETED
    foreign: dict[str, Any] = request.body() | {
        "name": job_name("embed-ft-eval", "ab" * 32),
        "custom_fields": {IDEMPOTENCY_FIELD: "someone-else"},
    }
    h.post(jobs.path, json=foreign)
    with pytest.raises(Conflict, match="belongs to idempotency key"):
        jobs.find("ab" * 32)
    jobs.cancel(foreign["name"])


def test_failed_job_explains_itself_and_cancel_stops_one(helix, local_nim, tmp_path):
    """A retrieve-eval job that cannot embed ends `error` with Helix's own explanation (what the asset's failure
    says); a cancelled job ends `cancelled` (what a terminated run does to its remote job)."""
    h = http(helix.url)
    files = FilesClient(h)
    files.ensure_workspace(WORKSPACE)
    files.ensure_fileset(WORKSPACE, "tiny-beir", purpose="dataset")
    files.upload_files(WORKSPACE, "tiny-beir", write_beir(tmp_path / "beir"))
    jobs = retrieve_eval_jobs(h, WORKSPACE)
    bad = retrieve_eval_request(
        fileset_ref(WORKSPACE, "tiny-beir"), f"{local_nim}/v1", "no-such/model", ["recall_5"], top_k=5
    )
    failed = jobs.create(bad, "1e" * 32)
    done = poll(lambda: jobs.get(failed["id"]), is_terminal, timeout_s=300, interval_s=1.0, what="failing job")
    assert job_status(done) == "failed"  # Helix says "error"
    assert failure_text(done) != "no detail reported"

    slow = retrieve_eval_request(
        fileset_ref(WORKSPACE, "tiny-beir"), f"{local_nim}/v1", BASE_MODEL, ["recall_5"], top_k=5
    )
    running = jobs.create(slow, "2e" * 32)
    jobs.cancel(running["id"])
    ended = poll(lambda: jobs.get(running["id"]), is_terminal, timeout_s=300, interval_s=1.0, what="cancelled job")
    assert job_status(ended) in ("cancelled", "completed")  # a job may finish before the cancel lands
    assert jobs.find("2e" * 32)["id"] == running["id"]
    # After a failed attempt, the next submission for the same key is attempt 2, not a clash with attempt 1.
    again = jobs.create(bad, "1e" * 32)
    assert again["id"] == job_name("embed-ft-eval", "1e" * 32, 2)
    jobs.cancel(again["id"])


def test_a_failed_retrieve_eval_job_fails_the_evaluation_at_once_with_helix_s_text(helix, local_nim, tmp_path):
    """The evaluation assets run under the remote-job retry policy; a retrieve-eval job that ended failed is an
    answer, not a transient error, so the step fails without a retry (as on v1), naming the job and Helix's text."""
    files = FilesClient(http(helix.url))
    files.ensure_workspace(WORKSPACE)
    files.ensure_fileset(WORKSPACE, "tiny-beir-failing", purpose="dataset")
    files.upload_files(WORKSPACE, "tiny-beir-failing", write_beir(tmp_path / "beir"))
    spec = preset_spec("smoke", get_profile("local-v2"))
    nim = Deployment(
        deployment=f"{WORKSPACE}/nowhere",
        model="no-such/model",
        served_name="no-such/model",
        dimension=384,
        nim_url=local_nim,
        ready_after_s=0.0,
        provider="nowhere",  # already behind a gateway: its URL is used as it is
    )
    evaluator = EvaluatorResource(base_url=helix.url, api="v2")
    published: list[tuple[str, RemoteProgress]] = []
    stop = subscribe(lambda step, progress: published.append((step, progress)))
    try:
        with pytest.raises(Failure) as failed:
            run_evaluation_v2(
                build_asset_context(),
                spec,
                "baseline",
                nim,
                {"tiny": f"fileset://{WORKSPACE}/tiny-beir-failing"},
                "v0",
                evaluator,
                WORKSPACE,
                timeout_s=300,
            )
    finally:
        stop()
    # The wait published its progress typed (what `embed-ft run` shows): the task, Helix's status, no percent.
    assert published, "the retrieve-eval wait published no progress"
    assert {(p.kind, p.percent) for _, p in published} == {("evaluation", None)}
    assert all(p.message.startswith("tiny") for _, p in published)
    assert published[-1][1].status == "failed"
    assert failed.value.allow_retries is False
    assert re.match(r"Evaluation job \S+ of no-such/model on tiny ended failed: ", failed.value.description or ""), (
        failed.value.description
    )
    assert failed.value.description != "no detail reported"
