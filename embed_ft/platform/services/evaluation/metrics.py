"""Retriever metrics: NeMo metric names, pytrec_eval (trec_eval) scoring, and the Evaluator's results document.

Metrics come from ``pytrec_eval.RelevanceEvaluator``, averaged over the queries it scores (BEIR does the same,
then rounds to 5 decimals; we do not round).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import pytrec_eval

from .errors import EvaluationError

_CUTOFF_METRIC = re.compile(r"(recall|ndcg_cut|map_cut|P)_([1-9][0-9]{0,4})")
_PLAIN_METRICS = {"map", "recip_rank", "ndcg"}


def parse_metric(name: str) -> tuple[str, int | None]:
    """``"recall_5"`` -> ``("recall", 5)``; ``"map"`` -> ``("map", None)``. Raises ValueError for unknown names."""
    if not isinstance(name, str):
        raise ValueError(f"metric name must be a string, got {name!r}")
    if name in _PLAIN_METRICS:
        return name, None
    match = _CUTOFF_METRIC.fullmatch(name)
    if not match:
        raise ValueError(
            f"unknown retriever metric {name!r}; supported: recall_K, ndcg_cut_K, map_cut_K, P_K "
            f"(K a positive integer), {', '.join(sorted(_PLAIN_METRICS))}"
        )
    return match.group(1), int(match.group(2))


def metric_depth(metric_names: Iterable[str]) -> int:
    """The largest cutoff among the metrics (0 when none has one)."""
    return max((k for _, k in map(parse_metric, metric_names) if k is not None), default=0)


def pytrec_measures(metric_names: Iterable[str]) -> set[str]:
    """pytrec_eval measure strings, one per measure with all its cutoffs (``"ndcg_cut.5,10"``).

    One string per measure, because pytrec_eval keeps only the last parameter list given for a measure.
    """
    cutoffs: dict[str, set[int]] = {}
    plain: set[str] = set()
    for name in metric_names:
        measure, k = parse_metric(name)
        if k is None:
            plain.add(measure)
        else:
            cutoffs.setdefault(measure, set()).add(k)
    return plain | {f"{m}." + ",".join(str(k) for k in sorted(ks)) for m, ks in cutoffs.items()}


def compute_metrics(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metric_names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """trec_eval metrics (mean over the queries pytrec_eval scores, as BEIR averages) and the per-query values."""
    metric_names = list(dict.fromkeys(metric_names))
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, pytrec_measures(metric_names))
    per_query = evaluator.evaluate(run)
    if not per_query:
        raise EvaluationError("no query of the qrels has any retrieved document; nothing to score")
    means = {name: float(sum(scores[name] for scores in per_query.values()) / len(per_query)) for name in metric_names}
    return means, per_query


def nemo_results(
    job_id: str,
    result_id: str,
    files_url: str,
    task_metrics: dict[str, dict[str, float]],
    task_per_query: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """The Evaluator's results document: ``tasks.<task>.metrics["retriever.<m>"].scores.<m>.value``.

    With ``task_per_query`` each task also carries ``per_query: {query_id: {metric: score}}`` (the requested
    metrics only), so a client can test a difference between two models query by query (NeMo's own Evaluator
    reports only the means; clients must not rely on this extension)."""
    tasks: dict[str, Any] = {
        task: {
            "metrics": {
                f"retriever.{name}": {"scores": {name: {"value": value, "stats": {}}}}
                for name, value in metrics.items()
            }
        }
        for task, metrics in task_metrics.items()
    }
    for task, per_query in (task_per_query or {}).items():
        if task in tasks:
            wanted = set(task_metrics[task])
            tasks[task]["per_query"] = {
                str(qid): {m: float(v) for m, v in scores.items() if m in wanted} for qid, scores in per_query.items()
            }
    return {"job": job_id, "id": result_id, "files_url": files_url, "tasks": tasks}
