"""Is the fine-tuned model really better? Paired tests over per-query scores (numpy/scipy, no Dagster).

For one task and metric, the per-query differences d_q = fine_tuned_q - baseline_q over the queries both evaluations
scored give:
- a two-sided paired permutation (sign-flip) test of mean(d) = 0 (scipy's `permutation_test`, exact up to 2^13
  sign patterns, else 9,999 random ones), and
- a 95% percentile bootstrap confidence interval of mean(d) (10,000 resamples of the queries).
Both are seeded, so the same scores give the same numbers. A task with fewer than `MIN_QUERIES` queries is flagged:
its numbers are shown but support no claim. Without per-query scores (a NeMo Evaluator that reports only the means)
the test is reported as not run.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from scipy.stats import permutation_test

from .values import PairedTest

MIN_QUERIES = 30
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000
PERMUTATION_RESAMPLES = 9_999
SEED = 20261201

BETTER = "significantly better"
WORSE = "significantly worse"
NO_DIFFERENCE = "no significant difference"
TOO_FEW = "too few queries"
NOT_TESTED = "not tested"


def per_query_scores(results: Any) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {query_id: {metric: score}}}`` from an Evaluator results document that carries them
    (``tasks.<task>.per_query``, as the local platform writes it); {} for a document without them."""
    tasks = results.get("tasks") if isinstance(results, dict) else None
    if not isinstance(tasks, dict):
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for task, doc in tasks.items():
        per_query = doc.get("per_query") if isinstance(doc, dict) else None
        if not isinstance(per_query, dict):
            continue
        scores = {
            str(qid): {str(m): float(v) for m, v in metrics.items() if isinstance(v, (int, float))}
            for qid, metrics in per_query.items()
            if isinstance(metrics, dict)
        }
        if scores:
            out[str(task)] = scores
    return out


def query_counts(results: Any) -> dict[str, int]:
    """Queries per task as the results report them (``task_status.<task>.num_queries``); {} when absent."""
    status = results.get("task_status") if isinstance(results, dict) else None
    if not isinstance(status, dict):
        return {}
    return {
        str(task): int(doc["num_queries"])
        for task, doc in status.items()
        if isinstance(doc, dict) and isinstance(doc.get("num_queries"), int)
    }


def _mean_difference(baseline, fine_tuned, axis):
    return np.mean(fine_tuned - baseline, axis=axis)


def paired_test(
    task: str,
    metric: str,
    baseline: Optional[dict[str, dict[str, float]]],
    fine_tuned: Optional[dict[str, dict[str, float]]],
    queries_reported: Optional[int] = None,
    min_queries: int = MIN_QUERIES,
) -> PairedTest:
    """The paired test of ``metric`` on ``task`` from both models' per-query scores (query -> metric -> score)."""
    if not baseline or not fine_tuned:
        return PairedTest(
            task=task,
            metric=metric,
            queries=queries_reported,
            mean_delta=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            verdict=NOT_TESTED,
            note="the evaluator returned no per-query scores, so the difference could not be tested",
        )
    shared = sorted(q for q in set(baseline) & set(fine_tuned) if metric in baseline[q] and metric in fine_tuned[q])
    if len(shared) < 2:
        return PairedTest(
            task=task,
            metric=metric,
            queries=len(shared),
            mean_delta=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            verdict=TOO_FEW,
            note=f"only {len(shared)} query scored by both models: nothing to test",
        )
    base = np.array([baseline[q][metric] for q in shared], dtype=float)
    tuned = np.array([fine_tuned[q][metric] for q in shared], dtype=float)
    diffs = tuned - base
    mean_delta = float(diffs.mean())
    rng = np.random.default_rng(SEED)
    boot = diffs[rng.integers(0, len(diffs), size=(BOOTSTRAP_RESAMPLES, len(diffs)))].mean(axis=1)
    ci_low, ci_high = (float(x) for x in np.percentile(boot, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)]))
    if np.allclose(diffs, 0.0):
        p_value = 1.0
    else:
        p_value = float(
            permutation_test(
                (base, tuned),
                _mean_difference,
                permutation_type="samples",
                vectorized=True,
                n_resamples=PERMUTATION_RESAMPLES,
                alternative="two-sided",
                random_state=SEED,
            ).pvalue
        )
    n = len(shared)
    if n < min_queries:
        verdict, note = TOO_FEW, f"{n} queries (< {min_queries}): too few to support a claim either way"
    elif p_value < ALPHA and mean_delta > 0:
        verdict, note = BETTER, f"p = {p_value:.4f} < {ALPHA}, 95% CI of the gain [{ci_low:+.4f}, {ci_high:+.4f}]"
    elif p_value < ALPHA and mean_delta < 0:
        verdict, note = WORSE, f"p = {p_value:.4f} < {ALPHA}, 95% CI of the change [{ci_low:+.4f}, {ci_high:+.4f}]"
    else:
        verdict, note = (
            NO_DIFFERENCE,
            f"p = {p_value:.4f} >= {ALPHA}, 95% CI [{ci_low:+.4f}, {ci_high:+.4f}] includes 0",
        )
    return PairedTest(
        task=task,
        metric=metric,
        queries=n,
        mean_delta=mean_delta,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value if math.isfinite(p_value) else None,
        verdict=verdict,
        note=note,
    )
