"""Benchmark (issue 22, item 5): NVIDIA's retrieve-eval (NeMo Platform v2, the real `nemo-helix` server started
here) vs our evaluator on the same BEIR set and the same embedding endpoint.

One embedding endpoint for both: our local platform's OpenAI-compatible ``/v1/embeddings`` serving the packaged
all-MiniLM-L6-v2. Our evaluator runs an evaluation job on that platform (target: that endpoint). Helix gets the
BEIR set uploaded to a fileset, the endpoint registered as a model provider, and a retrieve-eval job reaching it
through its inference gateway, with no query/passage prefixes. BEIR's own figures are not rerun here: our
evaluator equals BEIR to 0.0 on this set and model (BENCHMARKS.md item 1, `bench_evaluator.py`).

Reports every metric side by side, the largest difference, the queries whose nDCG@10 differs, and the wall time of
each (upload and job separately for Helix). One run on a shared machine: times are indicative.

    python bench/bench_helix_evaluator.py [--data DIR] [--k 1,3,5,10,100] [--max-docs N] [--out FILE.json]

``--max-docs N`` evaluates a smaller corpus on the same queries (every judged document of the test queries plus the
first N others, in corpus order) when there is no time for the whole one: the two evaluators still see the same
set, but its figures are not BEIR's published ones.
"""

# ruff: noqa: E402  (the repository goes on sys.path before its imports)
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beir" / "scifact"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
WORKSPACE = "embed-ft-bench"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embed_ft.defs.evaluation_v2 import upload_beir_fileset
from embed_ft.defs.significance import per_query_scores as v1_per_query
from embed_ft.helix import running_helix
from embed_ft.nemo.deployment import DeploymentClient
from embed_ft.nemo.evaluator import (
    EvaluatorClient,
    beir_task,
    retriever_config,
    retriever_target,
)
from embed_ft.nemo.http import ServiceHTTP
from embed_ft.nemo.nim import NimClient
from embed_ft.nemo.polling import poll
from embed_ft.nemo.status import COMPLETED, is_terminal, job_status
from embed_ft.nemo.v2.contract import FLAT_METRICS_RESULT, ROW_SCORES_RESULT
from embed_ft.nemo.v2.evaluation import (
    flat_metrics,
    per_query_scores,
    retrieve_eval_request,
)
from embed_ft.nemo.v2.files import FilesClient, fileset_ref
from embed_ft.nemo.v2.jobs import retrieve_eval_jobs
from embed_ft.nemo.v2.models import ModelsClient, gateway_provider_url
from embed_ft_tests.platform_server import running_platform


def metric_names(ks: list[int]) -> list[str]:
    return [f"{m}_{k}" for m in ("ndcg_cut", "recall", "map_cut", "P") for k in ks]


def ours(base_url: str, nim_url: str, served: str, task: str, metrics: list[str], top_k: int) -> dict:
    client = EvaluatorClient(ServiceHTTP(base_url, "evaluator", timeout=(5, 120)))
    config = retriever_config("bench", beir_task(f"file://{task}/", metrics, task))
    target = retriever_target(nim_url, served, top_k)
    started = time.monotonic()
    job = client.create_job(config, target)
    done = poll(lambda: client.get_job(job["id"]), is_terminal, timeout_s=4 * 3600, interval_s=2, what="ours")
    seconds = time.monotonic() - started
    if job_status(done) != COMPLETED:
        raise SystemExit(f"our evaluation job ended {job_status(done)}: {done.get('status_details')}")
    results = client.get_results(job["id"])
    return {
        "seconds": seconds,
        "metrics": client.parse_metrics(results)[task],
        "per_query": v1_per_query(results).get(task, {}),
    }


def helix_eval(helix_url: str, nim_url: str, served: str, data: Path, metrics: list[str], top_k: int) -> dict:
    http = ServiceHTTP(helix_url, "helix", timeout=(5, 120))
    files, models = FilesClient(http), ModelsClient(http)
    files.ensure_workspace(WORKSPACE)
    started = time.monotonic()
    upload_beir_fileset(files, WORKSPACE, "beir-scifact", data)
    upload_s = time.monotonic() - started
    models.ensure_provider(WORKSPACE, "bench-nim", nim_url)
    models.wait_for_provider(WORKSPACE, "bench-nim")
    gateway = gateway_provider_url(helix_url, WORKSPACE, "bench-nim")
    request = retrieve_eval_request(fileset_ref(WORKSPACE, "beir-scifact"), f"{gateway}/v1", served, metrics, top_k)
    jobs = retrieve_eval_jobs(http, WORKSPACE)
    started = time.monotonic()
    job = jobs.create(request, f"{int(time.time()):x}" + "0" * 24)
    done = poll(lambda: jobs.get(job["id"]), is_terminal, timeout_s=4 * 3600, interval_s=2, what="helix")
    seconds = time.monotonic() - started
    if job_status(done) != COMPLETED:
        raise SystemExit(f"retrieve-eval ended {job_status(done)}: {done.get('error_details')}")
    return {
        "seconds": seconds,
        "upload_s": upload_s,
        "metrics": flat_metrics(jobs.download_result(job["id"], FLAT_METRICS_RESULT), metrics),
        "per_query": per_query_scores(jobs.download_result(job["id"], ROW_SCORES_RESULT), metrics),
    }


def reduced_copy(data: Path, max_docs: int, dest: Path) -> Path:
    """``data`` with its corpus cut to the judged documents plus the first ``max_docs`` others (same queries)."""
    folder = dest / data.name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    qrels = (data / "qrels" / "test.tsv").read_text()
    judged = {line.split("\t")[1] for line in qrels.splitlines()[1:] if line.strip()}
    kept, others = [], 0
    for line in (data / "corpus.jsonl").read_text().splitlines():
        doc_id = str(json.loads(line)["_id"])
        if doc_id in judged or others < max_docs:
            others += doc_id not in judged
            kept.append(line)
    (folder / "corpus.jsonl").write_text("\n".join(kept) + "\n")
    (folder / "queries.jsonl").write_text((data / "queries.jsonl").read_text())
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def main() -> None:
    # A SIGTERM (timeout, kill) unwinds the context managers, so Helix and the platform are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--k", default="1,3,5,10,100")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--max-docs", type=int, default=0, help="0: the whole corpus")
    args = parser.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    metrics = metric_names(ks)
    data = args.data.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-helix-") as tmp:
        tmp_path = Path(tmp)
        if args.max_docs:
            data = reduced_copy(data, args.max_docs, tmp_path / "data")
        with (
            running_helix(tmp_path / "helix") as helix,
            running_platform(tmp_path, beir_root=data.parent) as (base_url, _settings),
        ):
            DeploymentClient(ServiceHTTP(base_url, "deployment")).create_deployment(
                "baseline", "bench", MODEL, {"image_name": "local", "image_tag": "1", "gpu": 1}
            )
            nim_url = f"{base_url}/nim"
            NimClient(ServiceHTTP(nim_url, "nim")).wait_for_model(MODEL, timeout_s=300, interval_s=0.5)
            ours_run = ours(base_url, nim_url, MODEL, data.name, metrics, max(ks))
            print(f"ours: {ours_run['seconds']:.1f} s", flush=True)
            helix_run = helix_eval(helix.url, nim_url, MODEL, data, metrics, max(ks))
            print(f"helix: {helix_run['seconds']:.1f} s (+ upload {helix_run['upload_s']:.1f} s)", flush=True)
    print("\n| metric | ours (= BEIR) | Helix retrieve-eval | difference |\n|---|---|---|---|")
    diffs = {}
    for m in metrics:
        a, b = ours_run["metrics"][m], helix_run["metrics"][m]
        diffs[m] = b - a
        print(f"| {m} | {a:.6f} | {b:.6f} | {b - a:+.2e} |")
    shared = set(ours_run["per_query"]) & set(helix_run["per_query"])
    differing = sorted(
        q
        for q in shared
        if abs(ours_run["per_query"][q].get("ndcg_cut_10", 0.0) - helix_run["per_query"][q].get("ndcg_cut_10", 0.0))
        > 1e-6
    )
    summary = {
        "bench": "helix_retrieve_eval_vs_ours",
        "date": dt.date.today().isoformat(),
        "dataset": data.name,
        "helix": "nemo-helix 0.8.1",
        "max_docs": args.max_docs,
        "k": ks,
        "ours_s": round(ours_run["seconds"], 1),
        "helix_job_s": round(helix_run["seconds"], 1),
        "helix_upload_s": round(helix_run["upload_s"], 1),
        "max_abs_metric_diff": max(abs(d) for d in diffs.values()),
        "queries_ours": len(ours_run["per_query"]),
        "queries_helix": len(helix_run["per_query"]),
        "queries_ndcg10_differ": len(differing),
        "differing_queries": differing[:20],
        "ours": ours_run["metrics"],
        "helix_metrics": helix_run["metrics"],
    }
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(
            json.dumps({**summary, "per_query_ours": ours_run["per_query"], "per_query_helix": helix_run["per_query"]})
        )


if __name__ == "__main__":
    main()
