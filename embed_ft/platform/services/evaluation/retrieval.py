"""Dense retrieval over a BEIR set: embed (cached), top-k (exact, or approximate for a large corpus), metrics.

Fidelity with BEIR (``EvaluateRetrieval`` + ``DenseRetrievalExactSearch`` + ``models.SentenceBERT``, beir 2.2.0):
cosine similarity and ``torch.topk`` over ``top_k + 1`` candidates in BEIR's corpus order, skipping a document
whose id equals the query id. Exact search streams the corpus in chunks (``torch.topk`` per chunk merged into a
bounded heap per query), so memory is bounded by the chunk, not the corpus, and the corpus may be a memory-mapped
cache file. Above ``SearchSettings.approximate_min_docs`` documents (``auto``) a faiss IVF index answers instead
(``ann.py``); ``EMBED_FT_EVAL_SEARCH=exact`` keeps exact search at any size.
"""

from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .ann import approximate_search, faiss_available
from .beir import BeirDataset
from .cache import PROBE_TEXTS, EmbeddingCache
from .embedders import Embedder
from .errors import EmbeddingEndpointError, EvaluationCancelled, EvaluationError, ProgressFn, StopFn
from .metrics import compute_metrics, metric_depth, parse_metric

# BEIR's DenseRetrievalExactSearch default: the corpus is scored in chunks of this many documents.
CORPUS_CHUNK_SIZE = 50_000
# Upper bound on one query-by-document score block (floats), so very large query sets are scored in slices.
MAX_SCORE_BLOCK = 16_000_000
SEARCH_MODES = ("auto", "exact", "approximate")
SEARCH_ENV = "EMBED_FT_EVAL_SEARCH"
APPROX_MIN_DOCS_ENV = "EMBED_FT_EVAL_APPROX_MIN_DOCS"
NPROBE_ENV = "EMBED_FT_EVAL_NPROBE"


@dataclass(frozen=True)
class SearchSettings:
    """How the top-k is found. ``auto``: exact below ``approximate_min_docs`` documents (or without faiss),
    approximate (faiss IVF, ``nprobe`` lists searched) from there; ``exact`` / ``approximate`` force one."""

    mode: str = "auto"
    approximate_min_docs: int = 2_000_000
    nprobe: int = 256  # of ~sqrt(N) lists: recall@10 >= 0.99 at 1M documents (BENCHMARKS.md)
    corpus_chunk_size: int = CORPUS_CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.mode not in SEARCH_MODES:
            raise EvaluationError(f"search mode must be one of {', '.join(SEARCH_MODES)}, got {self.mode!r}")

    @classmethod
    def from_env(cls) -> "SearchSettings":
        """``EMBED_FT_EVAL_SEARCH`` (auto|exact|approximate), ``EMBED_FT_EVAL_APPROX_MIN_DOCS``,
        ``EMBED_FT_EVAL_NPROBE``."""
        defaults = cls()
        return cls(
            mode=os.environ.get(SEARCH_ENV) or defaults.mode,
            approximate_min_docs=int(os.environ.get(APPROX_MIN_DOCS_ENV) or defaults.approximate_min_docs),
            nprobe=int(os.environ.get(NPROBE_ENV) or defaults.nprobe),
        )

    def approximate_for(self, n_docs: int) -> bool:
        if self.mode == "auto":
            return n_docs >= self.approximate_min_docs and faiss_available()
        return self.mode == "approximate"


def search(
    query_embeddings: np.ndarray,
    query_ids: Sequence[str],
    corpus_embeddings: np.ndarray,
    corpus_ids: Sequence[str],
    top_k: int,
    settings: SearchSettings | None = None,
    *,
    should_stop: StopFn | None = None,
) -> tuple[dict[str, dict[str, float]], str]:
    """The top-k run and the method used ("exact" or "approximate")."""
    settings = settings or SearchSettings()
    if settings.approximate_for(len(corpus_ids)):
        return approximate_search(
            query_embeddings,
            query_ids,
            corpus_embeddings,
            corpus_ids,
            top_k,
            nprobe=settings.nprobe,
            chunk_size=settings.corpus_chunk_size,
            should_stop=should_stop,
        ), "approximate"
    return exact_search(
        query_embeddings,
        query_ids,
        corpus_embeddings,
        corpus_ids,
        top_k,
        corpus_chunk_size=settings.corpus_chunk_size,
        should_stop=should_stop,
    ), "exact"


def exact_search(
    query_embeddings: np.ndarray,
    query_ids: Sequence[str],
    corpus_embeddings: np.ndarray,
    corpus_ids: Sequence[str],
    top_k: int,
    *,
    corpus_chunk_size: int = CORPUS_CHUNK_SIZE,
    should_stop: StopFn | None = None,
) -> dict[str, dict[str, float]]:
    """Cosine top-k for every query, as BEIR's DenseRetrievalExactSearch computes it (same ops, same order).

    Returns ``{query_id: {doc_id: score}}`` with at most ``top_k`` documents; a document whose id equals the
    query id is never returned.
    """
    import torch  # lazy: heavy; only a running evaluation needs it (the CLI imports the app)

    if query_embeddings.shape[1] != corpus_embeddings.shape[1]:
        raise EvaluationError(
            f"query embeddings have {query_embeddings.shape[1]} dimensions but document embeddings have "
            f"{corpus_embeddings.shape[1]}; the query and index models must produce vectors of the same size"
        )
    # Copies (np.array): the rows may be a read-only memory map; only one corpus chunk is in memory at a time.
    # On a GPU machine the chunk is scored there, as BEIR scores its CUDA tensors.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    queries = torch.nn.functional.normalize(
        torch.from_numpy(np.array(query_embeddings, dtype=np.float32)).to(device), p=2, dim=1
    )
    heaps: dict[str, list[tuple[float, str]]] = {qid: [] for qid in query_ids}
    n_docs = len(corpus_ids)
    rows_per_slice = max(1, MAX_SCORE_BLOCK // max(1, min(corpus_chunk_size, n_docs)))
    for start in range(0, n_docs, corpus_chunk_size):
        if should_stop is not None and should_stop():
            raise EvaluationCancelled()
        end = min(start + corpus_chunk_size, n_docs)
        docs = torch.nn.functional.normalize(
            torch.from_numpy(np.array(corpus_embeddings[start:end], dtype=np.float32)).to(device), p=2, dim=1
        )
        k = min(top_k + 1, end - start)
        for q_start in range(0, len(query_ids), rows_per_slice):
            scores = torch.mm(queries[q_start : q_start + rows_per_slice], docs.transpose(0, 1))
            scores[torch.isnan(scores)] = -1
            values, indices = torch.topk(scores, k, dim=1, largest=True, sorted=False)
            for row, (vals, idxs) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
                qid = query_ids[q_start + row]
                heap = heaps[qid]
                for score, idx in zip(vals, idxs, strict=True):
                    doc_id = corpus_ids[start + idx]
                    if doc_id == qid:
                        continue
                    _push_top(heap, (score, doc_id), top_k)
    return {qid: {doc_id: score for score, doc_id in heap} for qid, heap in heaps.items()}


def _push_top(heap: list[tuple[float, str]], item: tuple[float, str], top_k: int) -> None:
    if len(heap) < top_k:
        heapq.heappush(heap, item)
    else:
        heapq.heappushpop(heap, item)


# --------------------------------------------------------------------------------------------------- evaluation


@dataclass
class TaskEvaluation:
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: dict[str, dict[str, float]]
    top_k: int
    num_queries: int
    num_docs: int
    corpus_cache_hit: bool
    query_cache_hit: bool
    timings_s: dict[str, float] = field(default_factory=dict)
    search: str = "exact"  # or "approximate" (faiss IVF)


def _embed_with_cache(
    embedder: Embedder,
    texts: Sequence[str],
    ids: Sequence[str],
    fingerprint: str,
    input_type: str,
    cache: EmbeddingCache | None,
    on_batch: Callable[[int, int], None],
    should_stop: StopFn | None,
) -> tuple[np.ndarray, bool]:
    if cache is None:
        return embedder.embed(texts, input_type, on_batch=on_batch, should_stop=should_stop), False
    # The long probe goes alone so that the short ones are not padded to the maximum length.
    probe = np.concatenate(
        [embedder.embed(list(PROBE_TEXTS[:-1]), input_type), embedder.embed(list(PROBE_TEXTS[-1:]), input_type)]
    )
    key = cache.key(embedder.identity(), input_type, fingerprint)
    cached = cache.load(key, ids, probe)
    if cached is not None:
        on_batch(len(texts), len(texts))
        return cached, True
    vectors = embedder.embed(texts, input_type, on_batch=on_batch, should_stop=should_stop)
    if vectors.shape[1] != probe.shape[1]:
        raise EmbeddingEndpointError(
            f"embeddings from {embedder.describe()} changed dimension from {probe.shape[1]} to {vectors.shape[1]}"
        )
    cache.save(key, ids, vectors, probe)
    return vectors, False


def evaluate_retrieval(
    dataset: BeirDataset,
    query_embedder: Embedder,
    index_embedder: Embedder,
    metric_names: Sequence[str],
    top_k: int,
    *,
    cache: EmbeddingCache | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    search_settings: SearchSettings | None = None,
) -> TaskEvaluation:
    """Embed queries and corpus (cached), top-k (``search_settings``, default from the environment), pytrec_eval
    metrics.

    Retrieval depth is ``max(top_k, largest metric cutoff)`` so that a metric at K sees K documents.
    ``progress(fraction, message)`` goes from 0 to 1 (the corpus pass dominates, weighted by text count).
    """
    metric_names = list(dict.fromkeys(metric_names))
    for name in metric_names:
        parse_metric(name)
    depth = max(int(top_k), metric_depth(metric_names))
    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    total_texts = dataset.num_queries + dataset.num_docs

    def on_queries(done: int, total: int) -> None:
        report(0.95 * done / total_texts, f"embedded {done}/{total} queries")

    def on_corpus(done: int, total: int) -> None:
        report(0.95 * (dataset.num_queries + done) / total_texts, f"embedded {done}/{total} documents")

    t0 = time.perf_counter()
    query_vectors, query_hit = _embed_with_cache(
        query_embedder,
        dataset.query_texts,
        dataset.query_ids,
        dataset.queries_fingerprint,
        "query",
        cache,
        on_queries,
        should_stop,
    )
    timings["embed_queries"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    corpus_vectors, corpus_hit = _embed_with_cache(
        index_embedder,
        dataset.corpus_texts,
        dataset.corpus_ids,
        dataset.corpus_fingerprint,
        "passage",
        cache,
        on_corpus,
        should_stop,
    )
    timings["embed_corpus"] = time.perf_counter() - t0
    report(0.96, f"searching top {depth} of {dataset.num_docs} documents for {dataset.num_queries} queries")
    t0 = time.perf_counter()
    run, method = search(
        query_vectors,
        dataset.query_ids,
        corpus_vectors,
        dataset.corpus_ids,
        depth,
        search_settings or SearchSettings.from_env(),
        should_stop=should_stop,
    )
    timings["search"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, per_query = compute_metrics(dataset.qrels, run, metric_names)
    timings["metrics"] = time.perf_counter() - t0
    report(1.0, "metrics computed")
    return TaskEvaluation(
        metrics=metrics,
        per_query=per_query,
        run=run,
        top_k=depth,
        num_queries=dataset.num_queries,
        num_docs=dataset.num_docs,
        corpus_cache_hit=corpus_hit,
        query_cache_hit=query_hit,
        timings_s=timings,
        search=method,
    )
