"""`evaluation_report` (one per experiment): baseline vs fine-tuned per task and metric, how many queries back each
task, a paired significance test per task, a bar chart, and the `fine_tuned_beats_baseline` check.

Metadata keys are stable, so the UI plots each number over an experiment's materializations; they are written and
read through `report_metadata.py` only.
"""

import datetime as dt
from typing import Any, Optional

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from .backend import GPU_STAGE_CONDITION
from .charts import markdown_image, report_chart_png
from .common import CPU_TAGS, OWNERS, markdown_table, table_cell
from .experiments import EXPERIMENTS
from .report_metadata import PRIMARY_METRIC, paired_key, report_entries, score_key
from .significance import ALPHA, BETTER, MIN_QUERIES, NOT_TESTED, TOO_FEW, paired_test
from .values import EvaluationResult, PairedTest, Report, ReportRow

REPORT_CODE_VERSION = "2"
CHECK_NAME = "fine_tuned_beats_baseline"
CHECK_DESCRIPTION = (
    f"Passes when, on every task with at least {MIN_QUERIES} queries, the fine-tuned model's {PRIMARY_METRIC} is "
    f"significantly higher than the baseline's (two-sided paired permutation test over per-query scores, p < {ALPHA}, "
    "mean difference > 0), and at least one task could be tested. Tasks with fewer queries, or without per-query "
    "scores, support no claim and are listed."
)

# The comparison columns of one (task, metric) row: the report's table and the leaderboard's both start from these.
COMPARISON_COLUMNS = [
    TableColumn("task", "string"),
    TableColumn("metric", "string"),
    TableColumn("baseline", "float"),
    TableColumn("fine_tuned", "float"),
    TableColumn("delta", "float"),
    TableColumn("relative_delta", "float", description="(fine-tuned - baseline) / baseline"),
]
REPORT_SCHEMA = TableSchema(
    columns=[
        *COMPARISON_COLUMNS,
        TableColumn("queries", "int", description="queries evaluated (0: not reported)"),
        TableColumn("p_value", "float", description=f"paired permutation test, {PRIMARY_METRIC} rows only"),
        TableColumn("verdict", "string"),
    ]
)


def compare(baseline: EvaluationResult, fine_tuned: EvaluationResult) -> list[ReportRow]:
    """One row per (task, metric) both evaluated: the two scores, the delta and the relative delta."""
    rows = []
    for task in sorted(set(baseline.metrics) & set(fine_tuned.metrics)):
        base_scores, ft_scores = baseline.metrics[task], fine_tuned.metrics[task]
        for metric in sorted(set(base_scores) & set(ft_scores)):
            b, f = float(base_scores[metric]), float(ft_scores[metric])
            rows.append(
                ReportRow(
                    task=task,
                    metric=metric,
                    baseline=b,
                    fine_tuned=f,
                    delta=f - b,
                    relative_delta=(f - b) / b if b else float("nan"),
                )
            )
    return rows


def primary_metric_of(rows: list[ReportRow], task: str) -> str:
    metrics = [r.metric for r in rows if r.task == task]
    return PRIMARY_METRIC if PRIMARY_METRIC in metrics else metrics[0]


def significance_tests(
    rows: list[ReportRow], baseline: EvaluationResult, fine_tuned: EvaluationResult
) -> list[PairedTest]:
    """The paired test of each task's primary metric."""
    tests = []
    for task in sorted({r.task for r in rows}):
        reported = fine_tuned.queries.get(task) or baseline.queries.get(task)
        tests.append(
            paired_test(
                task,
                primary_metric_of(rows, task),
                baseline.per_query.get(task),
                fine_tuned.per_query.get(task),
                reported,
            )
        )
    return tests


def _fmt(value: Optional[float], spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def report_markdown(rows: list[ReportRow], tests: list[PairedTest]) -> str:
    by_task = {t.task: t for t in tests}
    table = markdown_table(
        ["task", "metric", "baseline", "fine-tuned", "delta", "relative"],
        [[r.task, r.metric, r.baseline, r.fine_tuned, r.delta, f"{100 * r.relative_delta:+.2f}%"] for r in rows],
    )
    significance = markdown_table(
        ["task", "metric", "queries", "mean delta", "95% CI", "p", "verdict"],
        [
            [
                t.task,
                t.metric,
                "n/a" if t.queries is None else t.queries,
                _fmt(t.mean_delta, "+.4f"),
                "n/a" if t.ci_low is None else f"[{t.ci_low:+.4f}, {t.ci_high:+.4f}]",
                _fmt(t.p_value),
                t.verdict + (f" ({t.note})" if t.verdict in (TOO_FEW, NOT_TESTED) else ""),
            ]
            for t in by_task.values()
        ],
    )
    return f"{table}\n\n**Fine-tuned minus baseline, paired over queries**\n\n{significance}"


def report_table(rows: list[ReportRow], tests: list[PairedTest]) -> MetadataValue:
    by_task = {t.task: t for t in tests}
    records = []
    for r in rows:
        test = by_task.get(r.task)
        primary = test is not None and test.metric == r.metric
        row = {
            "task": r.task,
            "metric": r.metric,
            "baseline": r.baseline,
            "fine_tuned": r.fine_tuned,
            "delta": r.delta,
            "relative_delta": r.relative_delta,
            "queries": int((test.queries if test else None) or 0),
            "p_value": test.p_value if test is not None and primary else None,
            "verdict": test.verdict if test is not None and primary else "",
        }
        records.append(TableRecord({k: table_cell(v) for k, v in row.items()}))
    return MetadataValue.table(records, schema=REPORT_SCHEMA)


def beats_baseline(tests: list[PairedTest]) -> AssetCheckResult:
    tested = [t for t in tests if t.verdict not in (TOO_FEW, NOT_TESTED)]
    untested = [t for t in tests if t.verdict in (TOO_FEW, NOT_TESTED)]
    losers = [t for t in tested if t.verdict != BETTER]
    lines = [f"{t.task} {t.metric}: {t.verdict} ({t.note})" for t in tests]
    if not tested:
        summary = f"Could not be tested: no task has per-query scores for at least {MIN_QUERIES} queries."
    elif losers:
        summary = "Not significantly better on: " + ", ".join(t.task for t in losers) + "."
    else:
        summary = "Significantly better on every testable task."
    if untested and tested:
        summary += " No claim on: " + ", ".join(t.task for t in untested) + "."
    metadata: dict[str, Any] = {
        "checks": MetadataValue.md(CHECK_DESCRIPTION),
        "tasks": MetadataValue.md("\n".join(f"- {x}" for x in lines)),
    }
    for t in tests:
        if t.mean_delta is not None:
            metadata[score_key(t.task, t.metric, "delta")] = float(t.mean_delta)
        if t.p_value is not None:
            metadata[paired_key(t.task, t.metric, "p_value")] = float(t.p_value)
    return AssetCheckResult(
        check_name=CHECK_NAME,
        passed=bool(tested) and not losers,
        severity=AssetCheckSeverity.WARN,
        description=summary,
        metadata=metadata,
    )


@asset(
    automation_condition=GPU_STAGE_CONDITION,
    group_name="evaluation",
    code_version=REPORT_CODE_VERSION,
    partitions_def=EXPERIMENTS,
    kinds={"python"},
    owners=OWNERS,
    tags=CPU_TAGS,
    description="One experiment's fine-tuned model vs the shared baseline, per task and metric: scores, deltas, "
    "queries, a paired significance test per task and a bar chart. Every number is a float metadata entry "
    "`task/metric/{baseline,fine_tuned,delta,relative_delta}`, plotted by the UI over the experiment's history.",
    check_specs=[AssetCheckSpec(CHECK_NAME, asset="evaluation_report", description=CHECK_DESCRIPTION)],
)
def evaluation_report(
    context: AssetExecutionContext, baseline_evaluation: EvaluationResult, fine_tuned_evaluation: EvaluationResult
):  # no return annotation: with check_specs, `-> MaterializeResult` would type the output as Nothing
    rows = compare(baseline_evaluation, fine_tuned_evaluation)
    if not rows:
        raise Failure(
            "The baseline and fine-tuned evaluations share no task/metric: "
            f"baseline {sorted(baseline_evaluation.metrics)}, fine-tuned {sorted(fine_tuned_evaluation.metrics)}"
        )
    only_one = set(baseline_evaluation.metrics) ^ set(fine_tuned_evaluation.metrics)
    if only_one:
        context.log.warning(f"Tasks evaluated for only one model are left out of the report: {sorted(only_one)}")
    experiment = context.partition_key
    tests = significance_tests(rows, baseline_evaluation, fine_tuned_evaluation)
    markdown = report_markdown(rows, tests)
    chart = report_chart_png(rows, PRIMARY_METRIC, f"{experiment}: {PRIMARY_METRIC}, baseline vs fine-tuned")
    metadata: dict[str, Any] = {
        "experiment": experiment,
        "chart": MetadataValue.md(markdown_image(chart, "baseline vs fine-tuned") if chart else "no primary metric"),
        "report": MetadataValue.md(markdown),
        "report_table": report_table(rows, tests),
        "baseline_model": baseline_evaluation.model,
        "baseline_job_id": baseline_evaluation.job_id,
        "fine_tuned_model": fine_tuned_evaluation.model,
    }
    metadata.update(report_entries(rows, tests))
    value = Report(
        rows=rows,
        markdown=markdown,
        baseline_model=baseline_evaluation.model,
        fine_tuned_model=fine_tuned_evaluation.model,
        experiment=experiment,
        tests=tests,
        created_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    )
    return MaterializeResult(value=value, metadata=metadata, check_results=[beats_baseline(tests)])
