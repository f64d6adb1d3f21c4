"""The values the assets hand each other: one frozen dataclass per asset output (Dagster's IO manager pickles them).

Each asset returns its value in ``MaterializeResult(value=...)`` and the next asset receives it typed; what the UI
and `embed-ft report` show lives in the materialization metadata, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..data.splitting import SPLITS


@dataclass(frozen=True)
class RawSnapshot:
    """`specter_raw`: the source as a local Parquet file (a BEIR source: a folder holding the split's files)."""

    path: Path
    source: str
    kind: str  # hub, local or beir
    revision: Optional[str]  # Hub commit sha; None for local and BEIR sources
    data_version: str
    layout: str  # "set" or "columns"; "beir" for a BEIR split (no negatives yet)
    rows: int  # BEIR: judged-relevant (query, document) pairs
    split: Optional[str] = None  # BEIR: the qrels split snapshotted


@dataclass(frozen=True)
class MinedTriplets:
    """`mined_triplets`: rows with negatives, ready to split (Parquet; the raw snapshot itself when passed through)."""

    path: Path
    source: str
    layout: str  # "set" or "columns"
    rows: int
    data_version: str  # the raw snapshot's version when passed through
    source_data_version: str
    mined: bool  # False: the source's rows carried their negatives and were passed through


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
    experiment: str  # the partition key


@dataclass(frozen=True)
class Deployment:
    """`baseline_nim` / `fine_tuned_nim`: a ready NIM deployment, listed by the gateway and smoke-tested."""

    deployment: str  # namespace/name
    model: str
    served_name: str
    dimension: int
    nim_url: str  # the OpenAI-compatible base (v2: the inference gateway's route to ``provider``)
    ready_after_s: float
    provider: Optional[str] = None  # v2: the gateway's model provider of this deployment (None on v1)


@dataclass(frozen=True)
class EvaluationResult:
    """`baseline_evaluation` / `fine_tuned_evaluation`: one Evaluator job's metrics per task."""

    model: str
    job_id: str
    tasks: dict[str, str]  # task name -> files_url
    metrics: dict[str, dict[str, float]]  # task name -> metric -> score
    # task -> query id -> metric -> score, when the evaluator reports them (the local platform does); else {}
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)  # task -> number of queries evaluated, when reported


@dataclass(frozen=True)
class ReportRow:
    task: str
    metric: str
    baseline: float
    fine_tuned: float
    delta: float
    relative_delta: float


@dataclass(frozen=True)
class PairedTest:
    """Fine-tuned minus baseline on one task and metric, tested over the per-query scores (`significance.py`)."""

    task: str
    metric: str
    queries: Optional[int]  # queries scored by both models (or reported by the evaluator); None when unknown
    mean_delta: Optional[float]
    ci_low: Optional[float]  # 95% bootstrap confidence interval of the mean difference
    ci_high: Optional[float]
    p_value: Optional[float]  # two-sided paired permutation test
    verdict: (
        str  # significantly better / significantly worse / no significant difference / too few queries / not tested
    )
    note: str


@dataclass(frozen=True)
class Report:
    """`evaluation_report`: baseline vs fine-tuned per task and metric, and the paired test per task."""

    rows: list[ReportRow]
    markdown: str
    baseline_model: str
    fine_tuned_model: str
    experiment: str = ""
    tests: list[PairedTest] = field(default_factory=list)
    created_at: str = ""  # UTC, "YYYY-MM-DD HH:MM:SS": when the report was made ("" for reports made before)
