"""Approximate top-k over a large corpus with a faiss IVF index (optional dependency: ``pip install faiss-cpu``,
extra ``[scale]``).

The corpus is read in chunks (it may be a memory-mapped cache file), L2-normalized (cosine = inner product) and
added to an ``IndexIVFFlat``; its coarse quantizer is trained on an evenly spaced sample. ``nprobe`` trades speed
for recall; `bench/bench_evaluator_scale.py` records the recall@10 against exact search at the defaults.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import EvaluationCancelled, EvaluationError, StopFn

TRAIN_POINTS_PER_LIST = 40  # faiss warns below 39 training points per list
KMEANS_ITERATIONS = 10  # coarse centroids need not converge; recall comes from nprobe


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401  (lazy: optional dependency)
    except ImportError:
        return False
    return True


def default_nlist(n_docs: int) -> int:
    """~sqrt(N) inverted lists (1,000,000 documents -> 1,000): on a CPU the index is built for one evaluation, and
    its build (k-means + assigning every document) grows with the number of lists."""
    return max(1, min(n_docs // TRAIN_POINTS_PER_LIST, int(math.sqrt(n_docs))))


def _normalized(rows: np.ndarray) -> np.ndarray:
    rows = np.array(rows, dtype=np.float32, copy=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)  # torch.nn.functional.normalize's eps
    rows /= norms
    return rows


def approximate_search(
    query_embeddings: np.ndarray,
    query_ids: Sequence[str],
    corpus_embeddings: np.ndarray,
    corpus_ids: Sequence[str],
    top_k: int,
    *,
    nlist: int | None = None,
    nprobe: int = 256,
    chunk_size: int = 50_000,
    should_stop: StopFn | None = None,
) -> dict[str, dict[str, float]]:
    """Cosine top-k per query from an IVF index; same contract as ``retrieval.exact_search`` (a document whose id
    equals the query id is never returned)."""
    try:
        import faiss  # lazy: optional dependency, only large corpora need it
    except ImportError as exc:
        raise EvaluationError("approximate search needs faiss: pip install 'embed-ft[scale]' (faiss-cpu)") from exc
    n_docs, dim = corpus_embeddings.shape
    if query_embeddings.shape[1] != dim:
        raise EvaluationError(
            f"query embeddings have {query_embeddings.shape[1]} dimensions but document embeddings have {dim}; "
            "the query and index models must produce vectors of the same size"
        )
    nlist = nlist or default_nlist(n_docs)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = KMEANS_ITERATIONS
    sample_size = min(n_docs, nlist * TRAIN_POINTS_PER_LIST * 2)
    sample = np.linspace(0, n_docs - 1, sample_size).astype(np.int64)
    index.train(_normalized(corpus_embeddings[sample]))
    for start in range(0, n_docs, chunk_size):
        if should_stop is not None and should_stop():
            raise EvaluationCancelled()
        index.add(_normalized(corpus_embeddings[start : start + chunk_size]))
    index.nprobe = min(nprobe, nlist)
    scores, indices = index.search(_normalized(query_embeddings), min(top_k + 1, n_docs))
    run: dict[str, dict[str, float]] = {}
    for qid, row_scores, row_indices in zip(query_ids, scores.tolist(), indices.tolist(), strict=True):
        hits: dict[str, float] = {}
        for score, idx in zip(row_scores, row_indices, strict=True):
            if idx < 0 or corpus_ids[idx] == qid:
                continue
            hits[corpus_ids[idx]] = score
            if len(hits) == top_k:
                break
        run[qid] = hits
    return run
