"""`experiment_leaderboard`: one row per experiment, built from the experiments' `Report` values.

The asset reads its partitioned upstream as data: every `evaluation_report` partition is mapped in, and Dagster's IO
manager hands it ``{experiment: Report}`` for the experiments that have a report (`allow_missing_partitions`), so an
experiment without one is simply absent. A row holds, per task, the primary metric's fine-tuned score, its relative
change over the baseline and the paired test's p-value; then the model and the report's date. `leaderboard_rows`
is the same table for the command line (`embed-ft report --experiments`, over the same values).
"""

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from .common import CPU_TAGS, OWNERS, markdown_table, table_cell
from .report_metadata import PRIMARY_METRIC
from .values import Report

LEADERBOARD_CODE_VERSION = "2"
HELDOUT_TASK = "heldout"  # the in-domain split: ranked on last, the BEIR tasks are the public claim


@dataclass(frozen=True)
class TaskScore:
    """One task of one experiment, on the leaderboard's metric."""

    baseline: float
    fine_tuned: float
    relative_delta: float
    p_value: Optional[float]  # None: the paired test could not be run
    queries: Optional[int]
    verdict: str


@dataclass(frozen=True)
class LeaderboardRow:
    experiment: str
    model: str
    date: str  # when the report was made (UTC); "" for reports made before dates were kept
    scores: dict[str, TaskScore]  # task -> its score on the leaderboard's metric


def _task_scores(report: Report, metric: str) -> dict[str, TaskScore]:
    tests = {t.task: t for t in report.tests if t.metric == metric}
    scores = {}
    for row in report.rows:
        if row.metric != metric:
            continue
        test = tests.get(row.task)
        scores[row.task] = TaskScore(
            baseline=row.baseline,
            fine_tuned=row.fine_tuned,
            relative_delta=row.relative_delta,
            p_value=test.p_value if test else None,
            queries=test.queries if test else None,
            verdict=test.verdict if test else "",
        )
    return scores


def leaderboard_tasks(rows: list[LeaderboardRow]) -> list[str]:
    """The tasks of the columns: BEIR tasks by name, the held-out split last."""
    return sorted({task for row in rows for task in row.scores}, key=lambda t: (t == HELDOUT_TASK, t))


def leaderboard_rows(reports: Mapping[str, Report], metric: str = PRIMARY_METRIC) -> list[LeaderboardRow]:
    """One row per experiment with a report, best first on the first task's fine-tuned ``metric``."""
    rows = [
        LeaderboardRow(
            experiment=experiment,
            model=report.fine_tuned_model,
            date=report.created_at,
            scores=_task_scores(report, metric),
        )
        for experiment, report in reports.items()
    ]
    rows = [row for row in rows if row.scores]
    tasks = leaderboard_tasks(rows)

    def rank(row: LeaderboardRow) -> tuple:
        values = [row.scores[t].fine_tuned if t in row.scores else -math.inf for t in tasks]
        return tuple(-v if math.isfinite(v) else math.inf for v in values) + (row.experiment,)

    return sorted(rows, key=rank)


def leaderboard_schema(tasks: list[str], metric: str = PRIMARY_METRIC) -> TableSchema:
    columns = [TableColumn("experiment", "string")]
    for task in tasks:
        columns += [
            TableColumn(task, "float", description=f"fine-tuned {metric} on {task}"),
            TableColumn(f"{task} change", "float", description="(fine-tuned - baseline) / baseline"),
            TableColumn(f"{task} p", "float", description="paired permutation test over queries (empty: not run)"),
        ]
    columns += [
        TableColumn("model", "string", description="the experiment's fine-tuned model"),
        TableColumn("date", "string", description="when the report was made (UTC)"),
    ]
    return TableSchema(columns=columns)


def leaderboard_records(rows: list[LeaderboardRow], tasks: list[str]) -> list[TableRecord]:
    records = []
    for row in rows:
        data: dict[str, Any] = {"experiment": row.experiment}
        for task in tasks:
            score = row.scores.get(task)
            data[task] = table_cell(score.fine_tuned) if score else None
            data[f"{task} change"] = table_cell(score.relative_delta) if score else None
            data[f"{task} p"] = table_cell(score.p_value) if score else None
        data.update(model=row.model, date=row.date)
        records.append(TableRecord({k: v for k, v in data.items() if v is not None}))
    return records


def leaderboard_markdown(rows: list[LeaderboardRow]) -> str:
    """The rows as a markdown table (what `embed-ft report --experiments` prints), the baseline's scores on top."""
    tasks = leaderboard_tasks(rows)
    header = ["experiment", *(f"{t} (change, p)" for t in tasks), "model", "date"]
    baselines = {t: next(r.scores[t].baseline for r in rows if t in r.scores) for t in tasks}
    lines: list[list[Any]] = [["(baseline)", *(f"{baselines[t]:.4f}" for t in tasks), "", ""]]
    for row in rows:
        cells = []
        for task in tasks:
            s = row.scores.get(task)
            p = "n/a" if s is None or s.p_value is None else f"{s.p_value:.4f}"
            cells.append("" if s is None else f"{s.fine_tuned:.4f} ({100 * s.relative_delta:+.2f}%, p {p})")
        lines.append([row.experiment, *cells, row.model, row.date])
    return markdown_table(header, lines)


def reports_by_experiment(loaded: Any, experiments: list[str]) -> dict[str, Report]:
    """``{experiment: Report}`` from what the IO manager loaded for the mapped partitions: a dict for several, the
    value itself for one (Dagster's filesystem IO manager), None for none."""
    if isinstance(loaded, Report):
        return {loaded.experiment or experiments[0]: loaded}
    return {key: value for key, value in (loaded or {}).items() if isinstance(value, Report)}


@asset(
    ins={
        "evaluation_report": AssetIn(
            partition_mapping=AllPartitionMapping(), metadata={"allow_missing_partitions": True}
        )
    },
    group_name="evaluation",
    code_version=LEADERBOARD_CODE_VERSION,
    kinds={"python"},
    owners=OWNERS,
    tags=CPU_TAGS,
    # Rebuilt after any experiment's report changes; never blocked by experiments that have no report yet.
    automation_condition=AutomationCondition.any_deps_updated() & ~AutomationCondition.in_progress(),
    description=f"One row per experiment, from every experiment's latest evaluation_report: per task the fine-tuned "
    f"{PRIMARY_METRIC}, its change over the baseline and the paired test's p-value, then model and date; sortable.",
)
def experiment_leaderboard(context: AssetExecutionContext, evaluation_report: Any) -> MaterializeResult:
    experiments = context.asset_partition_keys_for_input("evaluation_report")
    rows = leaderboard_rows(reports_by_experiment(evaluation_report, experiments))
    tasks = leaderboard_tasks(rows)
    metadata: dict[str, Any] = {
        "leaderboard": MetadataValue.table(leaderboard_records(rows, tasks), schema=leaderboard_schema(tasks)),
        "experiments": len(rows),
        "dagster/row_count": len(rows),
    }
    if rows and tasks:
        best = rows[0]
        metadata["best_experiment"] = best.experiment
        metadata[f"best/{tasks[0]}/{PRIMARY_METRIC}"] = float(best.scores[tasks[0]].fine_tuned)
        for task in tasks:
            baseline = next(r.scores[task].baseline for r in rows if task in r.scores)
            metadata[f"baseline/{task}/{PRIMARY_METRIC}"] = float(baseline)
    context.log.info(f"Leaderboard of {len(rows)} experiment(s) over {', '.join(tasks) or 'no task'}")
    return MaterializeResult(metadata=metadata)
