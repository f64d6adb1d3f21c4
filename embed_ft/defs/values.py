"""The values the assets hand each other: one frozen dataclass per asset output (Dagster's IO manager pickles them).

Each asset returns its value in ``MaterializeResult(value=...)`` and the next asset receives it typed; what the UI
and `embed-ft report` show lives in the materialization metadata, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..data.splitting import SPLITS


@dataclass(frozen=True)
class RawSnapshot:
    """`specter_raw`: the source as a local Parquet file."""

    path: Path
    source: str
    kind: str  # hub, local or beir
    revision: Optional[str]  # Hub commit sha; None for local and BEIR sources
    data_version: str
    layout: str  # "set" or "columns"
    rows: int


@dataclass(frozen=True)
class TripletSplits:
    """`specter_triplets`: the training/validation/testing NeMo JSONL files."""

    root: Path
    training: Path
    validation: Path
    testing: Path
    data_version: str
    source_data_version: str
    rows: dict[str, int]  # split name -> rows

    def paths(self) -> dict[str, Path]:
        """Split name -> file, in `SPLITS` order."""
        return {name: getattr(self, name) for name in SPLITS}


@dataclass(frozen=True)
class UploadedDataset:
    """`training_dataset`: the splits in a Data Store repo, registered in the Entity Store."""

    namespace: str
    name: str
    repo_id: str
    files_url: str
    commit: Optional[str]
    data_version: str


@dataclass(frozen=True)
class HeldoutDataset:
    """`heldout_eval_dataset`: the testing split as a BEIR set in a Data Store repo."""

    repo_id: str
    files_url: str
    data_version: str


@dataclass(frozen=True)
class FineTunedModel:
    """`fine_tuned_model`: the Customizer job and the model it wrote."""

    job_id: str
    output_model: str  # namespace/name@version
    served_name: str  # the name the NIM serves it under (namespace/name)
    target: str
    experiment: str


@dataclass(frozen=True)
class Deployment:
    """`baseline_nim` / `fine_tuned_nim`: a ready NIM deployment, listed by the gateway and smoke-tested."""

    deployment: str  # namespace/name
    model: str
    served_name: str
    dimension: int
    nim_url: str
    ready_after_s: float


@dataclass(frozen=True)
class EvaluationResult:
    """`baseline_evaluation` / `fine_tuned_evaluation`: one Evaluator job's metrics per task."""

    model: str
    job_id: str
    tasks: dict[str, str]  # task name -> files_url
    metrics: dict[str, dict[str, float]]  # task name -> metric -> score


@dataclass(frozen=True)
class ReportRow:
    task: str
    metric: str
    baseline: float
    fine_tuned: float
    delta: float
    relative_delta: float


@dataclass(frozen=True)
class Report:
    """`evaluation_report`: baseline vs fine-tuned per task and metric."""

    rows: list[ReportRow]
    markdown: str
    baseline_model: str
    fine_tuned_model: str
