"""Benchmark: the platform's ``/v1/embeddings`` vs ``SentenceTransformer.encode`` in process (HTTP overhead).

    python bench/bench_embeddings.py [--texts queries|passages] [--b1-requests 300] [--b64-requests 30]
                                     [--b1-budget-s 60] [--b64-budget-s 90]

The packaged all-MiniLM-L6-v2 is deployed as-is on a local platform (``python -m embed_ft.platform serve`` on a temp
home, its own process) and called over HTTP on 127.0.0.1 by one sequential client (a ``requests.Session``, keep-alive)
with ``encoding_format`` float and base64; the direct side calls ``SentenceTransformer.encode`` on the same weights,
device (CUDA when present), batch size (32, what the endpoint uses) and texts in this process. The client's time
includes decoding the answer into a float32 array (what ``encode`` hands back).

Texts: SciFact queries (short: the worst case for overhead, and the ceiling in requests/s) or SciFact passages
(title + text, truncated by the model at 256 tokens). Batch 1 and batch 64 requests, cycling through the texts.
The modes run interleaved request by request (every mode sends the same requests), so machine noise hits them
alike; a phase stops after its request count or, between rounds, its time budget. Ratios are given from mean
latencies (throughput) and from median latencies (robust to bursts of other work). Prints a table, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/common.py, next to this script)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the Entity Store's base model, served under this name
NAMESPACE = "bench-embeddings"
DEPLOYMENT = "minilm"
ENCODE_BATCH_SIZE = 32  # models.embed's default: what /v1/embeddings encodes with
WARMUP_REQUESTS = 3
TIMEOUT = (5, 120)


def load_texts(kind: str) -> list[str]:
    folder = common.SCIFACT_DIR
    if kind == "queries":
        return [q["text"] for q in common.read_jsonl(folder / "queries.jsonl")]
    return [common.scifact_doc_text(d) for d in common.read_jsonl(folder / "corpus.jsonl")[:2000]]


def deploy_base_model(base_url: str) -> None:
    from embed_ft.nemo.deployment import is_failed, is_ready, nim_deployment_body

    clients = common.nemo_clients(base_url)
    clients["entities"].ensure_namespace(NAMESPACE)
    clients["deployment"].create_deployment(DEPLOYMENT, NAMESPACE, MODEL, nim_deployment_body())
    deadline = time.monotonic() + 180
    while True:
        doc = clients["deployment"].get_deployment(NAMESPACE, DEPLOYMENT)
        if is_ready(doc):
            break
        if is_failed(doc) or time.monotonic() > deadline:
            raise RuntimeError(f"deployment {NAMESPACE}/{DEPLOYMENT} of {MODEL} did not become ready: {doc}")
        time.sleep(0.5)
    clients["nim"].wait_for_model(MODEL, timeout_s=60, interval_s=0.5)


def http_embedder(base_url: str, encoding_format: str) -> Callable[[list[str]], Any]:
    import numpy as np
    import requests

    session = requests.Session()
    from embed_ft.platform.settings import service_urls

    url = f"{service_urls(base_url)['NIM_URL']}/v1/embeddings"  # the NIM routes live under /nim

    def embed(texts: list[str]):
        response = session.post(
            url, json={"model": MODEL, "input": texts, "encoding_format": encoding_format}, timeout=TIMEOUT
        )
        if response.status_code != 200:
            raise RuntimeError(f"POST /v1/embeddings answered {response.status_code}: {response.text[:300]}")
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        if encoding_format == "base64":
            return np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in data])
        return np.asarray([item["embedding"] for item in data], dtype=np.float32)

    return embed


def direct_embedder(model: Any) -> Callable[[list[str]], Any]:
    import numpy as np

    def embed(texts: list[str]):
        # The call the endpoint makes (models.embed), minus HTTP and the NIM truncate/prompt handling.
        return np.asarray(
            model.encode(
                texts,
                batch_size=ENCODE_BATCH_SIZE,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )

    return embed


def run_phase(
    modes: dict[str, Callable], texts: list[str], batch: int, max_requests: int, budget_s: float, per_round: int
) -> dict[str, dict[str, Any]]:
    """Round-robin over the modes; each sends ``per_round`` requests of ``batch`` texts per round."""
    latencies: dict[str, list[float]] = {name: [] for name in modes}
    for embed in modes.values():  # warm-up: first-call allocations, connection set-up
        for i in range(WARMUP_REQUESTS):
            embed(texts[i * batch : (i + 1) * batch] or texts[:batch])
    started = time.monotonic()
    cursor = 0
    sent = 0
    while sent < max_requests and time.monotonic() - started < budget_s:
        chunks = []
        for _ in range(min(per_round, max_requests - sent)):
            if cursor + batch > len(texts):
                cursor = 0
            chunks.append(texts[cursor : cursor + batch])
            cursor += batch
        for chunk in chunks:  # request by request, mode after mode: a burst of noise hits every mode alike
            for name, embed in modes.items():
                t0 = time.perf_counter()
                embed(chunk)
                latencies[name].append(time.perf_counter() - t0)
        sent += len(chunks)
    results = {}
    for name, values in latencies.items():
        total = sum(values)
        results[name] = {
            "requests": len(values),
            "texts": len(values) * batch,
            "seconds": round(total, 4),
            "requests_per_s": round(len(values) / total, 3),
            "texts_per_s": round(len(values) * batch / total, 3),
            "p50_ms": round(1000 * statistics.median(values), 3),
            "mean_ms": round(1000 * total / len(values), 3),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", choices=("queries", "passages"), default="queries")
    parser.add_argument("--b1-requests", type=int, default=300, help="batch-1 requests per mode (at most)")
    parser.add_argument("--b64-requests", type=int, default=30, help="batch-64 requests per mode (at most)")
    parser.add_argument("--b1-budget-s", type=float, default=60.0, help="batch-1 phase time budget, all modes")
    parser.add_argument("--b64-budget-s", type=float, default=90.0, help="batch-64 phase time budget, all modes")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads of the server and of the direct side (0 = torch's default)",
    )
    args = parser.parse_args(argv)
    common.offline_hub()
    if args.threads:  # read by torch at import, here and in the platform process (inherits the environment)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from embed_ft.platform.services.model_weights import bundled_minilm_path

    texts = load_texts(args.texts)
    device = common.torch_device()
    model = SentenceTransformer(str(bundled_minilm_path()), device=device, local_files_only=True)
    model.eval()
    with common.temporary_home("bench-embeddings-") as home, common.platform_subprocess(home) as base_url:
        deploy_base_model(base_url)
        modes = {
            "direct": direct_embedder(model),
            "http_float": http_embedder(base_url, "float"),
            "http_base64": http_embedder(base_url, "base64"),
        }
        # Same vectors both ways (a throughput figure of a wrong answer would be worthless).
        sample = texts[:64]
        reference = modes["direct"](sample)
        max_abs_diff = {
            name: float(np.max(np.abs(modes[name](sample) - reference))) for name in ("http_float", "http_base64")
        }
        phases = {
            "batch_1": run_phase(modes, texts, 1, args.b1_requests, args.b1_budget_s, per_round=20),
            "batch_64": run_phase(modes, texts, 64, args.b64_requests, args.b64_budget_s, per_round=2),
        }

    overhead = {}
    for phase, results in phases.items():
        direct = results["direct"]
        for name in ("http_float", "http_base64"):
            overhead[f"{phase}_{name}"] = {
                # texts/s over HTTP divided by texts/s in process: 1.0 = no overhead
                "throughput_ratio_http_over_direct": common.ratio(results[name]["texts_per_s"], direct["texts_per_s"]),
                "added_ms_per_request": round(results[name]["mean_ms"] - direct["mean_ms"], 3),
                # the same from median latencies: less sensitive to bursts of other work on a shared machine
                "p50_ratio_http_over_direct": common.ratio(direct["p50_ms"], results[name]["p50_ms"]),
                "added_p50_ms_per_request": round(results[name]["p50_ms"] - direct["p50_ms"], 3),
            }
    figures = {
        "bench": "embeddings",
        "machine": common.machine_info(),
        "device": device,
        "texts": args.texts,
        "encode_batch_size": ENCODE_BATCH_SIZE,
        "results": phases,
        "http_overhead": overhead,
        "max_abs_diff_vs_direct": max_abs_diff,
        "peak_rss_mib_client_and_direct": round(common.peak_rss_mib(), 1),
    }
    print(f"{'mode':24}{'requests':>9}{'req/s':>10}{'texts/s':>10}{'p50 ms':>10}{'ratio':>8}{'p50 ratio':>10}")
    for phase, results in phases.items():
        for name, r in results.items():
            over = overhead.get(f"{phase}_{name}", {})
            print(
                f"{phase + ' ' + name:24}{r['requests']:>9}{r['requests_per_s']:>10}{r['texts_per_s']:>10}"
                f"{r['p50_ms']:>10}{over.get('throughput_ratio_http_over_direct', ''):>8}"
                f"{over.get('p50_ratio_http_over_direct', ''):>10}"
            )
    common.print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
