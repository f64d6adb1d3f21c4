"""Benchmark (issue 6, item 1): the platform's evaluator vs BEIR's EvaluateRetrieval + DenseRetrievalExactSearch.

Same data (a BEIR folder, default ``<repo>/../shared/data/beir/scifact``), same model (the packaged
all-MiniLM-L6-v2), same encode batch size and max_seq_length, same k values. Measured in one process:

1. BEIR: ``GenericDataLoader`` + ``SentenceBERT`` + ``DenseRetrievalExactSearch`` + ``EvaluateRetrieval``
   (model loading excluded).
2. Ours, cold: a real evaluation job on the local platform (uvicorn on 127.0.0.1 in this process), its target the
   platform's own ``/v1/embeddings`` with the model deployed there (deployment time excluded), POST -> completed.
3. Ours, warm: the same job again; the embedding cache skips the corpus and query passes.
4. Ours over HTTP (only with ``--http``: one more full pass): ``evaluation.py`` with ``EndpointEmbedder`` POSTing base64
   batches to the platform's ``/v1/embeddings``, the path a job takes for any remote NIM/OpenAI endpoint.

Fidelity: every metric of (2) vs BEIR's reported values (rounded by BEIR to 5 decimals) and vs BEIR's run scored
without rounding; the rankings of (2) vs BEIR's, and the largest score difference of a (query, document) pair.
Prints one JSON line at the end. Timings are ratios from one run on a shared machine: expect noise.

    python bench/bench_evaluator.py [--data DIR] [--batch-size 32] [--max-seq-length 256] [--k 1,3,5,10,100] \
        [--rounds 1] [--max-docs 0] [--max-queries 0]

``--rounds R``: R cold passes of each side, interleaved (BEIR, ours; then ours, BEIR; ...) so that a shared
machine's load falls on both sides alike; each round's ratio is printed, the JSON has their median. ``--max-docs N``:
the judged documents plus the first N others (a smaller corpus, written to a temporary BEIR folder; ``--max-queries``
likewise keeps the first Q judged queries). The platform
runs its default inference runtime (``auto``, calibrated at deployment, whose time is reported apart) unless
``EMBED_FT_INFERENCE_BACKEND`` says otherwise; BEIR's side is torch fp32 as always.

Requires ``pip install beir==2.2.0`` (bench only). Uses CUDA when present (both sides).
"""

from __future__ import annotations

import argparse
import atexit
import copy
import datetime as dt
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beir" / "scifact"
SERVED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import requests  # noqa: E402
import torch  # noqa: E402
import uvicorn  # noqa: E402

from embed_ft.platform.app import create_app  # noqa: E402
from embed_ft.platform.services import evaluation  # noqa: E402
from embed_ft.platform.services.model_weights import bundled_minilm_path  # noqa: E402
from embed_ft.platform.settings import PlatformSettings  # noqa: E402

BEIR_NAMES = {"ndcg_cut": "NDCG@{}", "map_cut": "MAP@{}", "recall": "Recall@{}", "P": "P@{}"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Platform:
    """The real app on 127.0.0.1:<free port> in a thread of this process (same torch threads as BEIR)."""

    def __init__(self, home: Path, beir_root: Path):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.settings = PlatformSettings(home=home, beir_root=beir_root, host="127.0.0.1", port=self.port)
        self.app = create_app(self.settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.sock = sock
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Platform":
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the platform did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, self.url + path, timeout=60, **kwargs)
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def deploy(self, max_seq_length: int | None) -> tuple[int, str, float]:
        """Deploy the model; (max_seq_length, which runtime serves it and why, seconds to deploy incl. calibration)."""
        started = time.perf_counter()
        self.call(
            "POST",
            "/v1/deployment/model-deployments",
            json={
                "name": "minilm-bench",
                "namespace": "bench",
                "config": {"model": SERVED_MODEL, "nim_deployment": {"disable_lora_support": True}},
            },
        )
        deadline = time.monotonic() + 300
        while True:
            doc = self.call("GET", "/v1/deployment/model-deployments/bench/minilm-bench")
            status = doc["status_details"]["status"].lower()
            if status == "ready":
                break
            if status in ("failed", "error") or time.monotonic() > deadline:
                raise RuntimeError(f"deployment did not become ready: {doc['status_details']}")
            time.sleep(0.2)
        entry = self.app.state.ctx.serving.served_model(SERVED_MODEL)
        if max_seq_length:
            entry.model.max_seq_length = max_seq_length  # bench knob: the platform has no API for it
        runtime = entry.runtime.summary() if entry.runtime is not None else "torch"
        return int(entry.model.max_seq_length), runtime, time.perf_counter() - started

    def forget_embeddings(self) -> None:
        """Empty the embedding cache: the next job is cold again."""
        shutil.rmtree(self.settings.cache_dir / "embeddings", ignore_errors=True)
        (self.settings.cache_dir / "embeddings").mkdir(parents=True, exist_ok=True)

    def evaluate(self, files_url: str, metric_names: list[str], top_k: int) -> tuple[float, dict, dict]:
        endpoint = {
            "api_endpoint": {
                "url": f"{self.url}/v1/embeddings",
                "model_id": SERVED_MODEL,
                "api_key": "",
                "format": "nim",
            }
        }
        body = {
            "config": {
                "type": "retriever",
                "namespace": "bench",
                "tasks": {
                    "beir": {
                        "type": "beir",
                        "dataset": {"files_url": files_url},
                        "metrics": {m: {"type": m} for m in metric_names},
                    }
                },
            },
            "target": {
                "type": "retriever",
                "retriever": {
                    "pipeline": {"query_embedding_model": endpoint, "index_embedding_model": endpoint, "top_k": top_k}
                },
            },
        }
        start = time.perf_counter()
        job = self.call("POST", "/v1/evaluation/jobs", json=body)
        while job["status"] not in ("completed", "failed", "cancelled"):
            # Every poll is served by this process, beside the job it times: 2 a second keeps that cost negligible
            # (20 a second, until 2026-12-07, cost the job's side CPU time; the completion time is late by <= 0.5 s).
            time.sleep(0.5)
            job = self.call("GET", f"/v1/evaluation/jobs/{job['id']}")
        elapsed = time.perf_counter() - start
        if job["status"] != "completed":
            raise RuntimeError(f"evaluation job {job['status']}: {job['status_details']}")
        results = self.call("GET", f"/v1/evaluation/jobs/{job['id']}/results")
        metrics = {
            name.removeprefix("retriever."): next(iter(v["scores"].values()))["value"]
            for name, v in results["tasks"]["beir"]["metrics"].items()
        }
        return elapsed, metrics, job

    def cached_run(self, dataset: evaluation.BeirDataset, metric_names: list[str], top_k: int) -> dict:
        """Our ranking, from the embeddings the job cached (no encoding): for the ranking comparison."""
        service = self.app.state.ctx.evaluator
        embedder = service._in_process_embedder(SERVED_MODEL)
        outcome = evaluation.evaluate_retrieval(dataset, embedder, embedder, metric_names, top_k, cache=service.cache)
        assert outcome.corpus_cache_hit, "expected the job's cached corpus embeddings"
        return outcome.run


def cpu_seconds() -> float:
    """This process's user + system CPU time: both sides run in it, one after the other."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def subset(folder: Path, max_docs: int, max_queries: int, out_root: Path) -> Path:
    """The first ``max_queries`` judged test queries (0: all), their judged documents plus the first ``max_docs``
    others, as a BEIR folder."""
    out = out_root / f"{folder.name}-{max_docs}-{max_queries}"
    (out / "qrels").mkdir(parents=True)
    header, *pairs = (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    pairs = [line for line in pairs if line.strip()]
    chosen = list(dict.fromkeys(line.split("\t")[0] for line in pairs))
    chosen_set = set(chosen[:max_queries] if max_queries else chosen)
    pairs = [line for line in pairs if line.split("\t")[0] in chosen_set]
    judged = {line.split("\t")[1] for line in pairs}
    kept, others = [], 0
    for line in (folder / "corpus.jsonl").open(encoding="utf-8"):
        doc_id = str(json.loads(line)["_id"])
        if doc_id in judged or others < max_docs:
            others += doc_id not in judged
            kept.append(line)
    (out / "corpus.jsonl").write_text("".join(kept), encoding="utf-8")
    queries = [
        line for line in (folder / "queries.jsonl").open(encoding="utf-8") if str(json.loads(line)["_id"]) in chosen_set
    ]
    (out / "queries.jsonl").write_text("".join(queries), encoding="utf-8")
    (out / "qrels" / "test.tsv").write_text("\n".join([header, *pairs]) + "\n", encoding="utf-8")
    return out


def run_beir(folder: Path, batch_size: int, max_seq_length: int, k_values: list[int]):
    from beir.datasets.data_loader import GenericDataLoader
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    model = models.SentenceBERT(str(bundled_minilm_path()), max_length=max_seq_length)
    start = time.perf_counter()
    corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split="test")
    retriever = EvaluateRetrieval(
        DenseRetrievalExactSearch(model, batch_size=batch_size, show_progress_bar=False),
        k_values=k_values,
        score_function="cos_sim",
    )
    results = retriever.retrieve(corpus, queries)
    ndcg, _map, recall, precision = retriever.evaluate(qrels, results, k_values)
    elapsed = time.perf_counter() - start
    reported = {**ndcg, **_map, **recall, **precision}
    return elapsed, reported, results, qrels


def unrounded_beir(qrels: dict, results: dict, metric_names: list[str]) -> dict[str, float]:
    """BEIR's averages before its round(..., 5): pytrec_eval on BEIR's own run, summed and divided as BEIR does."""
    import pytrec_eval

    per_query = pytrec_eval.RelevanceEvaluator(qrels, evaluation.pytrec_measures(metric_names)).evaluate(results)
    return {m: sum(s[m] for s in per_query.values()) / len(per_query) for m in metric_names}


def compare_runs(ours: dict, beir: dict) -> dict:
    """How the two rankings differ: queries with another ordered top list, and score differences."""
    differing, tie_only, max_score_diff = 0, 0, 0.0
    for qid, beir_docs in beir.items():
        our_docs = ours.get(qid, {})
        common = set(beir_docs) & set(our_docs)
        if common:
            max_score_diff = max(max_score_diff, max(abs(beir_docs[d] - our_docs[d]) for d in common))

        def order(run: dict) -> list[str]:  # trec_eval's order: score desc, then doc id desc
            return sorted(run, key=lambda doc: (run[doc], doc), reverse=True)

        if order(our_docs) != order(beir_docs):
            differing += 1
            # Tie-only if every doc that differs sits at a score equal (1e-6) to the cut-off score.
            cut = min(beir_docs.values()) if beir_docs else 0.0
            swapped = set(beir_docs) ^ set(our_docs)
            scores = [beir_docs.get(d, our_docs.get(d)) for d in swapped]
            if swapped and all(abs(s - cut) < 1e-6 for s in scores):
                tie_only += 1
    return {
        "queries_with_different_ranking": differing,
        "of_which_boundary_ties": tie_only,
        "max_abs_score_diff": max_score_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="a BEIR folder (corpus, queries, qrels/test.tsv)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="encode batch size; the platform's embeddings route encodes in batches of 32",
    )
    parser.add_argument("--max-seq-length", type=int, default=0, help="0: the model's own (256 for MiniLM-L6-v2)")
    parser.add_argument("--k", default="1,3,5,10,100", help="k values (BEIR's k_values; our metric cut-offs)")
    parser.add_argument("--rounds", type=int, default=1, help="cold passes of each side, interleaved")
    parser.add_argument("--max-docs", type=int, default=0, help="judged documents plus this many others (0: all)")
    parser.add_argument("--max-queries", type=int, default=0, help="the first N judged test queries (0: all)")
    parser.add_argument(
        "--http",
        action="store_true",
        help="also time evaluation.py with EndpointEmbedder over HTTP (one more full corpus pass)",
    )
    args = parser.parse_args()
    if args.batch_size != 32:
        print(
            "note: the platform encodes in batches of 32; other BEIR batch sizes change the padding, not the "
            "maths, and may move embeddings by ~1e-7",
            file=sys.stderr,
        )

    scratch = Path(tempfile.mkdtemp(prefix="bench-evaluator-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    folder = (
        subset(args.data.resolve(), args.max_docs, args.max_queries, scratch / "beir")
        if args.max_docs or args.max_queries
        else args.data.resolve()
    )
    k_values = [int(k) for k in args.k.split(",")]
    metric_names = [f"{m}_{k}" for m in BEIR_NAMES for k in k_values]
    top_k = max(k_values)
    dataset = evaluation.load_beir_folder(folder)
    print(
        f"data {folder}: {dataset.num_docs} documents, {dataset.num_queries} test queries; "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}"
    )

    with Platform(scratch / "home", folder.parent) as plat:
        max_seq_length, runtime, deploy_s = plat.deploy(args.max_seq_length or None)
        print(
            f"model {SERVED_MODEL} deployed in {deploy_s:.1f} s (runtime calibration included), max_seq_length "
            f"{max_seq_length}, batch size {args.batch_size}; runtime: {runtime}"
        )

        beir_times, cold_times, ratios, cpu = [], [], [], {"beir": [], "ours": []}
        for round_index in range(args.rounds):
            for side in ("beir", "ours") if round_index % 2 == 0 else ("ours", "beir"):
                cpu_before = cpu_seconds()
                if side == "beir":
                    beir_s, beir_reported, beir_results, qrels = run_beir(
                        folder, args.batch_size, max_seq_length, k_values
                    )
                    beir_times.append(beir_s)
                    print(
                        f"round {round_index + 1}: BEIR EvaluateRetrieval + DenseRetrievalExactSearch: {beir_s:.1f} s"
                    )
                else:
                    plat.forget_embeddings()
                    cold_s, ours, job = plat.evaluate(f"file://{folder.name}/", metric_names, top_k)
                    cold_times.append(cold_s)
                    print(
                        f"round {round_index + 1}: platform evaluation job (cold cache): {cold_s:.1f} s  "
                        f"{job['status_details']['task_status']}"
                    )
                cpu[side].append(cpu_seconds() - cpu_before)
                print(f"round {round_index + 1}: {side} used {cpu[side][-1]:.1f} CPU-s")
            ratios.append(cold_times[-1] / beir_times[-1])
            print(f"round {round_index + 1}: wall-time ratio ours/BEIR = {ratios[-1]:.3f}")
        beir_s, cold_s = statistics.median(beir_times), statistics.median(cold_times)
        beir_exact = unrounded_beir(qrels, copy.deepcopy(beir_results), metric_names)
        warm_s, ours_warm, _ = plat.evaluate(f"file://{folder.name}/", metric_names, top_k)
        print(f"platform evaluation job (warm cache): {warm_s:.2f} s")

        http_s = None
        if args.http:
            embedder = evaluation.EndpointEmbedder(f"{plat.url}/v1/embeddings", SERVED_MODEL)
            start = time.perf_counter()
            http_outcome = evaluation.evaluate_retrieval(
                evaluation.load_beir_folder(folder), embedder, embedder, metric_names, top_k
            )
            http_s = time.perf_counter() - start
            http_diff = max(abs(http_outcome.metrics[m] - ours[m]) for m in metric_names)
            print(
                f"evaluation.py via EndpointEmbedder over HTTP (no cache): {http_s:.1f} s; "
                f"max |metric - job metric| = {http_diff:.2e}"
            )
        our_run = plat.cached_run(dataset, metric_names, top_k)

    def beir_value(name: str, table: dict) -> float:
        measure, k = evaluation.parse_metric(name)
        return table[BEIR_NAMES[measure].format(k)]

    diff_reported = {m: abs(ours[m] - beir_value(m, beir_reported)) for m in metric_names}
    diff_exact = {m: abs(ours[m] - beir_exact[m]) for m in metric_names}
    rounded_equal = sum(round(ours[m], 5) == beir_value(m, beir_reported) for m in metric_names)
    runs = compare_runs(our_run, beir_results)
    warm_equal = max(abs(ours_warm[m] - ours[m]) for m in metric_names)
    print(
        f"max |ours - BEIR reported (rounded to 5 dp)| = {max(diff_reported.values()):.2e}; "
        f"ours rounded to 5 dp equal BEIR's for {rounded_equal}/{len(metric_names)} metrics"
    )
    print(
        f"max |ours - BEIR unrounded| = {max(diff_exact.values()):.2e} "
        f"(worst: {max(diff_exact, key=diff_exact.get)}); rankings: {runs}"
    )
    print(
        f"wall-time ratio ours/BEIR = {statistics.median(ratios):.3f} (median of rounds "
        f"{[round(r, 3) for r in ratios]}); warm-cache speedup = {cold_s / warm_s:.1f}x; "
        f"warm metrics differ by {warm_equal:.1e}"
    )
    for name in ("ndcg_cut_10", "recall_10", "recall_5", "ndcg_cut_5"):
        if name in ours:
            print(f"  {name}: ours {ours[name]:.6f}  BEIR {beir_value(name, beir_reported):.5f}")

    print(
        json.dumps(
            {
                "bench": "evaluator_vs_beir",
                "date": dt.date.today().isoformat(),
                "dataset": folder.name,
                "num_docs": dataset.num_docs,
                "num_queries": dataset.num_queries,
                "model": SERVED_MODEL,
                "device": "cuda" if torch.cuda.is_available() else "cpu",
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "batch_size": args.batch_size,
                "max_seq_length": max_seq_length,
                "k_values": k_values,
                "runtime": runtime,
                "deploy_s": round(deploy_s, 1),
                "rounds": args.rounds,
                "beir_s_rounds": [round(t, 2) for t in beir_times],
                "ours_cold_s_rounds": [round(t, 2) for t in cold_times],
                "wall_time_ratio_rounds": [round(r, 4) for r in ratios],
                "cpu_s_rounds": {side: [round(t, 1) for t in values] for side, values in cpu.items()},
                "cpu_time_ratio": round(sum(cpu["ours"]) / sum(cpu["beir"]), 4),
                "beir_s": round(beir_s, 2),
                "ours_job_cold_s": round(cold_s, 2),
                "ours_job_warm_s": round(warm_s, 3),
                "ours_http_s": round(http_s, 2) if http_s else None,
                "wall_time_ratio": round(statistics.median(ratios), 4),
                "http_wall_time_ratio": round(http_s / beir_s, 4) if http_s else None,
                "warm_cache_speedup": round(cold_s / warm_s, 1),
                "max_abs_metric_diff_vs_beir_reported": max(diff_reported.values()),
                "max_abs_metric_diff_vs_beir_unrounded": max(diff_exact.values()),
                "metrics_equal_at_5dp": f"{rounded_equal}/{len(metric_names)}",
                **runs,
                "ndcg_cut_10": ours.get("ndcg_cut_10"),
                "recall_10": ours.get("recall_10"),
            }
        )
    )


if __name__ == "__main__":
    main()
