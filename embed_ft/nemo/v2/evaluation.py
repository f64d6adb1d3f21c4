"""v2 retrieval evaluation (Helix ``retrieve-eval``): the request for one BEIR fileset and one embeddings endpoint,
and its results read into the shapes the v1 evaluator client returns (so the report is the same on both profiles).

A completed job lists named results: ``eval-results`` is a flat JSON object of means named like our metrics
(``ndcg_cut_10``, ``recall_5``, ``P_1``, ``map_cut_10``, plus ``dropped_qrel_rows``); ``row-scores`` is JSON Lines,
one query per line with ``item.query_id`` and ``metrics: {group: [{"name", "value"}]}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import NemoResponseError
from .contract import (
    EmbeddingEndpoint,
    RetrievalTarget,
    RetrieveEvalJobRequest,
    RetrieveEvalSpec,
)

CUTOFF = re.compile(r"_(\d+)$")
NOT_METRICS = frozenset({"dropped_qrel_rows"})


def cutoffs(metrics: list[str], top_k: int) -> list[int]:
    """The ``k`` list Helix computes metrics at: every cutoff our metric names use, and ``top_k``."""
    ks = {int(m.group(1)) for name in metrics if (m := CUTOFF.search(name))}
    return sorted(ks | {top_k})


def retrieve_eval_request(
    dataset: str, embeddings_url: str, model: str, metrics: list[str], top_k: int, description: str | None = None
) -> RetrieveEvalJobRequest:
    """One retrieve-eval job: BEIR fileset ``dataset`` (``workspace/name``), embeddings from ``embeddings_url``
    (an OpenAI-compatible ``/v1`` base, e.g. the inference gateway's provider route) for ``model``; raw texts (no
    query/passage prefixes: the models we train take none); first-stage search deep enough for every cutoff."""
    ks = cutoffs(metrics, top_k)
    target = RetrievalTarget(
        embeddings=EmbeddingEndpoint(url=embeddings_url, name=model),
        first_stage_k=max(ks),
        query_prefix="",
        passage_prefix="",
    )
    spec = RetrieveEvalSpec(dataset=dataset, target=target, k=ks)
    # The name is replaced by the job collection's attempt name (from the idempotency key).
    return RetrieveEvalJobRequest(name="embed-ft-eval", description=description, spec=spec)


def flat_metrics(raw: bytes, wanted: list[str]) -> dict[str, float]:
    """``{metric: mean}`` for the ``wanted`` metrics from the ``eval-results`` result."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise NemoResponseError(f"retrieve-eval eval-results is not JSON: {raw[:200]!r}") from None
    if not isinstance(body, dict):
        raise NemoResponseError(f"retrieve-eval eval-results should be an object, got {type(body).__name__}")
    missing = [m for m in wanted if not isinstance(body.get(m), (int, float))]
    if missing:
        raise NemoResponseError(f"retrieve-eval eval-results lacks {missing}; it has {sorted(body)}")
    return {m: float(body[m]) for m in wanted}


def per_query_scores(raw: bytes, wanted: list[str]) -> dict[str, dict[str, float]]:
    """``{query_id: {metric: score}}`` from the ``row-scores`` result (JSON Lines), as v1 results carry them."""
    scores: dict[str, dict[str, float]] = {}
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query_id = str(row["item"]["query_id"])
            groups: dict[str, Any] = row.get("metrics") or {}
        except (ValueError, KeyError, TypeError):
            raise NemoResponseError(f"retrieve-eval row-scores line {number} is not a scored query") from None
        for values in groups.values():
            for entry in values or []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if name in wanted and name not in NOT_METRICS and isinstance(entry.get("value"), (int, float)):
                    scores.setdefault(query_id, {})[name] = float(entry["value"])
    return scores
