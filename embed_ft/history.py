"""The report history in the Dagster instance, as `embed-ft report` prints it: each materialization of
`evaluation_report` with its date, experiment and run, the latest one's table with each task's paired test, and
every experiment's latest `Report` value (through the IO manager) for the leaderboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from .definitions import defs
from .defs.experiments import experiment_names
from .defs.report_metadata import ReportEntries, read_report_entries, results_lines
from .defs.values import Report

REPORT_ASSET = "evaluation_report"


@dataclass(frozen=True)
class ReportEntry:
    run_id: str
    timestamp: float
    experiment: str
    metadata: dict[str, Any]

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def entries(self) -> ReportEntries:
        """The report's rows and tests, read back from its metadata (`defs/report_metadata.py`)."""
        return read_report_entries(self.metadata)


def _experiment(instance: DagsterInstance, run_id: str, partition: Optional[str]) -> str:
    """The partition (experiment) of the entry; for entries from before experiments were partitions, the
    `experiment` of the run's fine_tuned_model config, else "default"."""
    if partition:
        return partition
    run = instance.get_run_by_id(run_id)
    ops: Any = (run.run_config or {}).get("ops", {}) if run else {}
    return ((ops.get("fine_tuned_model") or {}).get("config") or {}).get("experiment") or "default"


def report_history(instance: DagsterInstance) -> list[ReportEntry]:
    """Every materialization of evaluation_report, oldest first."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(REPORT_ASSET)), limit=1000, ascending=True
    ).records
    return [
        ReportEntry(
            run_id=record.run_id,
            timestamp=record.timestamp,
            experiment=_experiment(instance, record.run_id, materialization.partition),
            metadata={k: v.value for k, v in (materialization.metadata or {}).items()},
        )
        for record in records
        if (materialization := record.asset_materialization) is not None
    ]


def latest_table(entry: ReportEntry) -> list[str]:
    """Every task and metric of ``entry``, aligned, with each task's query count, interval and p-value beside it."""
    entries = entry.entries
    return results_lines(entries.rows, entries.tests)


def history_line(entry: ReportEntry, metric: str) -> str:
    cells = [
        f"{row.task} {row.baseline:.4f} -> {row.fine_tuned:.4f} ({100 * row.relative_delta:+.2f}%)"
        for row in entry.entries.rows_of(metric)
    ]
    return f"- {entry.date}  experiment {entry.experiment}  run {entry.run_id}: " + ("; ".join(cells) or f"no {metric}")


def latest_reports(instance: DagsterInstance) -> dict[str, Report]:
    """Every experiment's latest `Report` value, loaded through the code location's IO manager (as the leaderboard
    asset receives them); experiments without a stored report are left out."""
    reports = {}
    materialized = instance.get_materialized_partitions(AssetKey(REPORT_ASSET))
    for experiment in experiment_names(instance):
        if experiment not in materialized:
            continue
        try:
            value = defs.load_asset_value(REPORT_ASSET, partition_key=experiment, instance=instance)
        except (FileNotFoundError, OSError):  # materialized by a run whose IO manager stored nothing here
            continue
        if isinstance(value, Report):
            reports[experiment] = value
    return reports


def history_place(instance: DagsterInstance, dagster_home: object) -> str:
    """Where the history is kept: the PostgreSQL database a production instance names in DAGSTER_HOME's
    ``dagster.yaml`` (deploy/dagster.yaml), else the DAGSTER_HOME folder itself (SQLite files)."""
    storage = type(instance.run_storage).__name__
    if "Postgres" in storage:
        return f"PostgreSQL (the storage {dagster_home}/dagster.yaml names)"
    return str(dagster_home)
