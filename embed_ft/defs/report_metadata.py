"""The report's numbers as metadata entries, written and read through this one module.

`evaluation_report` writes them (`report_entries`), `embed-ft report` reads them back from every past
materialization (`read_report_entries`): the key layout below is defined nowhere else.

- `task/metric/{baseline,fine_tuned,delta,relative_delta}`: floats, one per (task, metric), plotted by the UI;
- `task/queries`: the queries behind the task (a float, so the UI plots it too);
- `task/metric/{p_value,ci_low,ci_high}`: the paired test of the task's primary metric, where it could be run;
- `task/verdict`: the test's verdict (a string).

`results_lines` is the one text table of a report (the CLI's `run` and `report` print it): scores beside each task's
query count, 95% interval and p-value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

from .values import PairedTest, ReportRow

PRIMARY_METRIC = "ndcg_cut_10"
SCORE_COLUMNS = ("baseline", "fine_tuned", "delta", "relative_delta")
TEST_FIELDS = ("p_value", "ci_low", "ci_high")
QUERIES = "queries"
VERDICT = "verdict"

EntryValue = Union[float, str]


def score_key(task: str, metric: str, column: str) -> str:
    return f"{task}/{metric}/{column}"


def queries_key(task: str) -> str:
    return f"{task}/{QUERIES}"


def paired_key(task: str, metric: str, name: str) -> str:
    return f"{task}/{metric}/{name}"


def verdict_key(task: str) -> str:
    return f"{task}/{VERDICT}"


def report_entries(rows: Iterable[ReportRow], tests: Iterable[PairedTest]) -> dict[str, EntryValue]:
    """The metadata entries of a report's rows and tests (see the module docstring)."""
    entries: dict[str, EntryValue] = {}
    for row in rows:
        for column in SCORE_COLUMNS:
            entries[score_key(row.task, row.metric, column)] = float(getattr(row, column))
    for test in tests:
        if test.queries is not None:
            entries[queries_key(test.task)] = float(test.queries)
        for name in TEST_FIELDS:
            value = getattr(test, name)
            if value is not None:
                entries[paired_key(test.task, test.metric, name)] = float(value)
        entries[verdict_key(test.task)] = test.verdict
    return entries


@dataclass(frozen=True)
class ReportEntries:
    """What `read_report_entries` finds: the rows (task, metric, scores) and each task's test."""

    rows: list[ReportRow]
    tests: list[PairedTest]

    def metrics(self) -> list[str]:
        return sorted({row.metric for row in self.rows})

    def rows_of(self, metric: str) -> list[ReportRow]:
        return [row for row in self.rows if row.metric == metric]


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_report_entries(metadata: Mapping[str, Any]) -> ReportEntries:
    """The rows and tests of a report's metadata (values, not `MetadataValue`s); incomplete rows are left out."""
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metadata.items():
        parts = key.split("/")
        number = _number(value)
        if len(parts) == 3 and parts[2] in SCORE_COLUMNS and number is not None:
            scores.setdefault((parts[0], parts[1]), {})[parts[2]] = number
    rows = [
        ReportRow(task=task, metric=metric, **{c: cols[c] for c in SCORE_COLUMNS})
        for (task, metric), cols in sorted(scores.items())
        if all(c in cols for c in SCORE_COLUMNS)
    ]
    tests = []
    for task in sorted({row.task for row in rows}):
        metrics = [row.metric for row in rows if row.task == task]
        tested = [m for m in metrics if _number(metadata.get(paired_key(task, m, "p_value"))) is not None]
        metric = tested[0] if tested else (PRIMARY_METRIC if PRIMARY_METRIC in metrics else metrics[0])
        queries = _number(metadata.get(queries_key(task)))
        fields = {name: _number(metadata.get(paired_key(task, metric, name))) for name in TEST_FIELDS}
        verdict = metadata.get(verdict_key(task))
        if queries is None and verdict is None and all(v is None for v in fields.values()):
            continue  # a report from before the tests existed
        tests.append(
            PairedTest(
                task=task,
                metric=metric,
                queries=None if queries is None else int(queries),
                mean_delta=None,
                verdict=str(verdict or ""),
                note="",
                **fields,
            )
        )
    return ReportEntries(rows=rows, tests=tests)


def _interval(test: Optional[PairedTest]) -> str:
    if test is None or test.ci_low is None or test.ci_high is None:
        return ""
    return f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}]"


def results_lines(
    rows: Iterable[ReportRow], tests: Iterable[PairedTest] = (), primary: str = PRIMARY_METRIC
) -> list[str]:
    """The report as aligned text, primary metric first; beside each task's tested row: its query count, the 95%
    interval of the per-query difference, the permutation test's p-value and the verdict."""
    by_task = {test.task: test for test in tests}
    ordered = sorted(rows, key=lambda r: (r.task, r.metric != primary, r.metric))
    table: list[tuple[str, ...]] = [
        ("task", "metric", "baseline", "fine-tuned", "change", "queries", "95% CI of delta", "p", "verdict")
    ]
    for r in ordered:
        test = by_task.get(r.task)
        shown = test if test is not None and test.metric == r.metric else None
        table.append(
            (
                r.task,
                r.metric,
                f"{r.baseline:.4f}",
                f"{r.fine_tuned:.4f}",
                f"{100 * r.relative_delta:+.2f}%",
                "" if shown is None or shown.queries is None else str(shown.queries),
                _interval(shown),
                "" if shown is None or shown.p_value is None else f"{shown.p_value:.4f}",
                "" if shown is None else shown.verdict,
            )
        )
    if not by_task:  # no test at all (a report from before them): the five score columns only
        table = [row[:5] for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    text_columns = {0, 1, len(table[0]) - 1} if by_task else {0, 1}

    def aligned(i: int, cell: str) -> str:
        return cell.ljust(widths[i]) if i in text_columns else cell.rjust(widths[i])

    return ["  ".join(aligned(i, cell) for i, cell in enumerate(row)).rstrip() for row in table]
