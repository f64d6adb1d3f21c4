"""The report history in the Dagster instance, as `embed-ft report` prints it: each materialization of
`evaluation_report` with its date, experiment and run, and the baseline vs fine-tuned table of the latest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

REPORT_ASSET = "evaluation_report"
COLUMNS = ("baseline", "fine_tuned", "relative_delta")


@dataclass(frozen=True)
class ReportEntry:
    run_id: str
    timestamp: float
    experiment: str
    metadata: dict[str, Any]

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def scores(self, metric: str) -> dict[str, dict[str, float]]:
        """task -> {baseline, fine_tuned, relative_delta} for ``metric`` (keys `task/metric/column`)."""
        found: dict[str, dict[str, float]] = {}
        for key, value in self.metadata.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[1] == metric and parts[2] in COLUMNS:
                found.setdefault(parts[0], {})[parts[2]] = float(value)
        return {task: cols for task, cols in sorted(found.items()) if "baseline" in cols and "fine_tuned" in cols}

    def metrics(self) -> list[str]:
        return sorted({key.split("/")[1] for key in self.metadata if key.count("/") == 2})


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
    """Every task and metric of ``entry``: baseline, fine-tuned, relative change, aligned."""
    rows = [("task", "metric", "baseline", "fine-tuned", "change")]
    for metric in entry.metrics():
        for task, cols in entry.scores(metric).items():
            rel = cols.get("relative_delta")
            rows.append((task, metric, f"{cols['baseline']:.4f}", f"{cols['fine_tuned']:.4f}",
                         f"{100 * rel:+.2f}%" if rel is not None else ""))
    rows[1:] = sorted(rows[1:], key=lambda r: (r[0], r[1]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows]


def history_line(entry: ReportEntry, metric: str) -> str:
    cells = [
        f"{task} {cols['baseline']:.4f} -> {cols['fine_tuned']:.4f}"
        + (f" ({100 * cols['relative_delta']:+.2f}%)" if "relative_delta" in cols else "")
        for task, cols in entry.scores(metric).items()
    ]
    return f"- {entry.date}  experiment {entry.experiment}  run {entry.run_id}: " + ("; ".join(cells) or f"no {metric}")
