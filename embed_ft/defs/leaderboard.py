"""`experiment_leaderboard`: every experiment's latest report, side by side, as a sortable table.

It reads the instance (the latest `evaluation_report` materialization of every experiment partition), not the IO
manager, so an experiment that has no report yet is simply absent. `leaderboard_rows(instance)` is the same data for
the command line (`embed-ft report --experiments`).
"""


import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AutomationCondition,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from .common import CPU_TAGS, OWNERS, markdown_table, table_cell
from .experiments import experiment_names
from .report import COMPARISON_COLUMNS, PRIMARY_METRIC, evaluation_report

LEADERBOARD_CODE_VERSION = "1"
REPORT_KEY = AssetKey("evaluation_report")
COLUMNS = ["experiment", "task", "metric", "baseline", "fine_tuned", "delta", "relative_delta", "model", "date"]

LEADERBOARD_SCHEMA = TableSchema(
    columns=[
        TableColumn("experiment", "string"),
        *COMPARISON_COLUMNS,
        TableColumn("model", "string", description="the experiment's fine-tuned model"),
        TableColumn("date", "string", description="when the report was materialized (UTC)"),
        TableColumn("queries", "int", description="queries behind the task (0: not reported)"),
        TableColumn("verdict", "string", description="paired significance test on the primary metric"),
    ]
)


@dataclass(frozen=True)
class LeaderboardRow:
    experiment: str
    task: str
    metric: str
    baseline: float
    fine_tuned: float
    delta: float
    relative_delta: float
    model: str
    date: str  # ISO 8601, UTC, seconds
    queries: int
    verdict: str  # the task's significance verdict ("" on rows of other metrics)


def _rows_of(experiment: str, metadata: dict[str, Any], timestamp: float, metric: Optional[str]) -> list[LeaderboardRow]:
    rows = []
    date = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    for key in sorted(metadata):
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != "baseline" or (metric and parts[1] != metric):
            continue
        task, name = parts[0], parts[1]
        values = {c: metadata.get(f"{task}/{name}/{c}") for c in ("baseline", "fine_tuned", "delta", "relative_delta")}
        if not all(isinstance(v, (int, float)) for v in values.values()):
            continue
        verdict = metadata.get(f"{task}/verdict") if name == PRIMARY_METRIC else ""
        rows.append(
            LeaderboardRow(
                experiment=experiment, task=task, metric=name, model=str(metadata.get("fine_tuned_model", "")),
                date=date, queries=int(metadata.get(f"{task}/queries") or 0), verdict=str(verdict or ""),
                **{c: float(v) for c, v in values.items() if v is not None},
            )
        )
    return rows


def leaderboard_rows(instance: DagsterInstance, metric: Optional[str] = None) -> list[LeaderboardRow]:
    """The latest report of every experiment, one row per (experiment, task, metric); only ``metric`` when given.

    Sorted by task, metric, then fine-tuned score (best first). Experiments without a report are left out.
    """
    rows: list[LeaderboardRow] = []
    for experiment in experiment_names(instance):
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=REPORT_KEY, asset_partitions=[experiment]), limit=1
        ).records
        if not records or records[0].asset_materialization is None:
            continue
        metadata = {k: v.value for k, v in (records[0].asset_materialization.metadata or {}).items()}
        rows += _rows_of(experiment, metadata, records[0].timestamp, metric)
    return sorted(rows, key=lambda r: (r.task, r.metric, -r.fine_tuned if math.isfinite(r.fine_tuned) else 0.0))


def leaderboard_markdown(rows: list[LeaderboardRow]) -> str:
    """The rows as a markdown table (what `embed-ft report --experiments` prints)."""
    return markdown_table(
        ["experiment", "task", "metric", "baseline", "fine-tuned", "delta", "relative", "queries", "verdict", "model", "date"],
        [
            [r.experiment, r.task, r.metric, r.baseline, r.fine_tuned, r.delta, f"{100 * r.relative_delta:+.2f}%",
             r.queries or "n/a", r.verdict, r.model, r.date]
            for r in rows
        ],
    )


@asset(
    deps=[evaluation_report],
    group_name="evaluation",
    code_version=LEADERBOARD_CODE_VERSION,
    kinds={"python"},
    owners=OWNERS,
    tags=CPU_TAGS,
    # Rebuilt after any experiment's report changes; never blocked by experiments that have no report yet.
    automation_condition=AutomationCondition.any_deps_updated() & ~AutomationCondition.in_progress(),
    description="Every experiment's latest evaluation_report side by side (experiment, task, metric, baseline, "
    "fine-tuned, delta, relative delta, model, date): a sortable table, primary metric first.",
)
def experiment_leaderboard(context: AssetExecutionContext) -> MaterializeResult:
    rows = leaderboard_rows(context.instance)
    rows.sort(key=lambda r: r.metric != PRIMARY_METRIC)  # stable: the primary metric's rows first
    records = [TableRecord({k: table_cell(v) for k, v in asdict(r).items()}) for r in rows]
    best = max((r for r in rows if r.metric == PRIMARY_METRIC), key=lambda r: r.fine_tuned, default=None)
    metadata: dict[str, Any] = {
        "leaderboard": MetadataValue.table(records, schema=LEADERBOARD_SCHEMA),
        "experiments": len({r.experiment for r in rows}),
        "dagster/row_count": len(rows),
    }
    if best is not None:
        metadata["best_experiment"] = best.experiment
        metadata[f"best/{PRIMARY_METRIC}/fine_tuned"] = float(best.fine_tuned)
    return MaterializeResult(metadata=metadata)
