"""The training data of a customization job: NeMo triplet JSONL files of a Data Store repo, by split."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from embed_ft.formats.nemo_jsonl import read_rows

TRAINING_SPLIT = "training"
VALIDATION_SPLIT = "validation"


class TrainingDataError(ValueError):
    """A dataset that cannot be trained on (no training file); broken files raise ``TripletFileError``."""


def split_files(repo_dir: Path, split: str) -> list[Path]:
    """The JSONL files of one split: every ``*.jsonl`` under the folder named after it (tutorial layout)."""
    folder = repo_dir / split
    return sorted(p for p in folder.rglob("*.jsonl") if p.is_file()) if folder.is_dir() else []


def read_split(repo_dir: Path, split: str, dataset_label: str) -> list[dict[str, Any]]:
    """Every row of a split's files; ``TripletFileError`` names the file (as ``dataset/path``) and broken lines."""
    rows: list[dict[str, Any]] = []
    for path in split_files(repo_dir, split):
        rows.extend(read_rows(path, f"{dataset_label}/{path.relative_to(repo_dir).as_posix()}"))
    return rows


def choose_num_negatives(rows: list[dict[str, Any]], requested: int | None) -> int:
    """Hard negatives per row: the requested count, but never more than every row has."""
    available = min(len(r["neg_doc"]) for r in rows)
    return available if requested is None else min(requested, available)


def triplet_columns(
    rows: list[dict[str, Any]], num_negatives: int, strategy: str = "first", seed: int = 42
) -> dict[str, list[str]]:
    """Rows -> the (anchor, positive, negative_1..n) columns MultipleNegativesRankingLoss reads, in order."""
    rng = random.Random(seed)
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    for i in range(num_negatives):
        columns[f"negative_{i + 1}"] = []
    for row in rows:
        columns["anchor"].append(row["query"])
        columns["positive"].append(row["pos_doc"])
        negatives = row["neg_doc"]
        chosen = rng.sample(negatives, num_negatives) if strategy == "random" else negatives[:num_negatives]
        for i, neg in enumerate(chosen):
            columns[f"negative_{i + 1}"].append(neg)
    return columns
