"""Evaluator scale: top-k search + metrics over synthetic corpora of 10k, 100k and 1,000,000 documents.

Synthetic embeddings stand in for an embedded corpus: unit vectors (384 dimensions, all-MiniLM-L6-v2's size) drawn
around random topic centres (about 100 documents a topic), and queries made from a random document plus noise,
judged relevant to that document. They are written as an embedding-cache entry (`EmbeddingCache.save`) and read
back as the evaluator reads a warm cache: a read-only memory map. Each (size, method) runs in a fresh child
process through the evaluator's own code: `EmbeddingCache.load` -> `retrieval.search` (exact: streamed top-k
over 50,000-document chunks; approximate: faiss IVF, `ann.py`) -> `metrics.compute_metrics`.

Measured per run: wall time of load + search + metrics; peak RSS of the child (VmHWM) and peak anonymous RSS
(RssAnon sampled every 10 ms: memory the process owns, not the file pages of the memory map, which the kernel can
drop), both minus the child's baseline after imports; recall@10 of approximate against exact on the same queries.
Not measured: embedding the corpus (a model's cost, linear in N; see bench_evaluator.py).

    python bench/bench_evaluator_scale.py [--sizes 10000,100000,1000000] [--queries 200] [--methods exact,approximate]

Device: exact search runs its matmul/top-k with torch on the CPU (the corpus is a memory map on disk); faiss-cpu
for approximate. Prints a table and ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine_info, print_json_line  # noqa: E402

DIM = 384
TOP_K = 10
METRICS = ["ndcg_cut_10", "recall_10"]
GEN_CHUNK = 50_000
# Noise norms: a document's cosine to its topic centre ~0.78 (same-topic documents ~0.6 apart), a query's to its
# document ~0.8 - so its same-topic neighbours compete with the judged document, as in real retrieval.
DOC_NOISE = 0.8
QUERY_NOISE = 0.75


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_corpus(folder: Path, n_docs: int, n_queries: int, seed: int) -> dict:
    """Write the cache entry of a synthetic corpus and its queries; returns the keys and qrels."""
    from embed_ft.platform.services.evaluation.cache import PROBE_TEXTS, EmbeddingCache

    rng = np.random.default_rng(seed)
    n_topics = max(1, n_docs // 100)
    centres = rng.standard_normal((n_topics, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    raw = folder / "raw.npy"
    rows = np.lib.format.open_memmap(raw, mode="w+", dtype=np.float32, shape=(n_docs, DIM))
    for start in range(0, n_docs, GEN_CHUNK):
        end = min(start + GEN_CHUNK, n_docs)
        topics = rng.integers(0, n_topics, end - start)
        block = centres[topics] + DOC_NOISE * rng.standard_normal((end - start, DIM), dtype=np.float32) / np.sqrt(DIM)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        rows[start:end] = block
    rows.flush()
    picked = rng.choice(n_docs, n_queries, replace=False)
    queries = rows[picked] + QUERY_NOISE * rng.standard_normal((n_queries, DIM), dtype=np.float32) / np.sqrt(DIM)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    del rows
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" for i in range(n_queries)]
    probe = np.zeros((len(PROBE_TEXTS), DIM), dtype=np.float32)
    cache = EmbeddingCache(folder / "cache")
    cache.save("corpus", doc_ids, np.load(raw, mmap_mode="r"), probe)  # streamed from the memory map
    cache.save("queries", query_ids, queries, probe)
    raw.unlink()
    qrels = {qid: {f"d{int(j)}": 1} for qid, j in zip(query_ids, picked, strict=True)}
    (folder / "qrels.json").write_text(json.dumps(qrels))
    return {"cache": str(folder / "cache"), "qrels": str(folder / "qrels.json"), "docs": n_docs, "queries": n_queries}


def child(spec: dict) -> dict:
    """One (size, method) run in this process: load (memory map) -> search -> metrics."""
    import tracemalloc

    import torch  # noqa: F401  (imported before the baseline: its own footprint is not the search's)

    from embed_ft.platform.services.evaluation.cache import PROBE_TEXTS, EmbeddingCache
    from embed_ft.platform.services.evaluation.metrics import compute_metrics
    from embed_ft.platform.services.evaluation.retrieval import SearchSettings, search

    peak_anon = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], status_kib("RssAnon"))
            time.sleep(0.01)

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base_rss, base_anon = status_kib("VmRSS"), status_kib("RssAnon")
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    tracemalloc.start()
    t0 = time.perf_counter()
    cache = EmbeddingCache(Path(spec["cache"]))
    probe = np.zeros((len(PROBE_TEXTS), DIM), dtype=np.float32)
    doc_ids = [f"d{i}" for i in range(spec["docs"])]
    query_ids = [f"q{i}" for i in range(spec["queries"])]
    corpus = cache.load("corpus", doc_ids, probe)
    queries = cache.load("queries", query_ids, probe)
    assert corpus is not None
    assert queries is not None
    assert isinstance(corpus, np.memmap)
    t_load = time.perf_counter()
    settings = SearchSettings(mode=spec["method"], nprobe=spec["nprobe"])
    run, method = search(queries, query_ids, corpus, doc_ids, TOP_K, settings)
    t_search = time.perf_counter()
    metrics, _ = compute_metrics(json.loads(Path(spec["qrels"]).read_text()), run, METRICS)
    t_end = time.perf_counter()
    done.set()
    thread.join()
    _, traced_peak = tracemalloc.get_traced_memory()
    top = {qid: sorted(hits, key=lambda d: -hits[d]) for qid, hits in run.items()}
    return {
        "method": method,
        "load_s": t_load - t0,
        "search_s": t_search - t_load,
        "metrics_s": t_end - t_search,
        "total_s": t_end - t0,
        "peak_rss_mib": (status_kib("VmHWM") - base_rss) / 1024,
        "peak_anon_mib": (peak_anon[0] - base_anon) / 1024,
        "tracemalloc_peak_mib": traced_peak / 2**20,
        "metrics": metrics,
        "top": top,
    }


def run_child(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {spec['method']} @ {spec['docs']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall_at_10(approx: dict, exact: dict) -> float:
    found = sum(len(set(approx[q][:TOP_K]) & set(exact[q][:TOP_K])) for q in exact)
    return found / sum(len(exact[q][:TOP_K]) for q in exact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--methods", default="exact,approximate")
    parser.add_argument("--nprobe", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    results = []
    for n_docs in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="embed-ft-scale-") as folder:
            t0 = time.perf_counter()
            spec = write_corpus(Path(folder), n_docs, args.queries, args.seed)
            generate_s = time.perf_counter() - t0
            runs = {m: run_child({**spec, "method": m, "nprobe": args.nprobe}) for m in args.methods.split(",")}
        for method, r in runs.items():
            row = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k not in ("top", "metrics")}
            row.update(
                docs=n_docs,
                queries=args.queries,
                generate_s=round(generate_s, 2),
                ndcg_cut_10=round(r["metrics"]["ndcg_cut_10"], 5),
            )
            if method != "exact" and "exact" in runs:
                row["recall10_vs_exact"] = round(recall_at_10(r["top"], runs["exact"]["top"]), 4)
            results.append(row)
            print(
                f"{n_docs:>9} {row['method']:<12} total {row['total_s']:8.2f}s  search {row['search_s']:8.2f}s  "
                f"peak RSS +{row['peak_rss_mib']:7.1f} MiB  anon +{row['peak_anon_mib']:7.1f} MiB  "
                f"nDCG@10 {row['ndcg_cut_10']:.4f}  recall@10 vs exact {row.get('recall10_vs_exact', '-')}",
                flush=True,
            )
    print_json_line(
        {
            "bench": "evaluator_scale",
            "machine": machine_info(),
            "nprobe": args.nprobe,
            "runs": results,
            "command": " ".join(sys.argv),
        }
    )


if __name__ == "__main__":
    main()
